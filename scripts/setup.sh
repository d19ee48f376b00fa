#!/usr/bin/env bash
# Set up RL Workbench in a virtual environment (.venv by default).
#   bash scripts/setup.sh          core + test/notebook tools (CPU or GPU)
#   WB_VENV=none bash scripts/setup.sh   install into the current Python (Colab)
#   WB_GPU=1 bash scripts/setup.sh       also the GPU extra (unsloth), CUDA machines only
#   WB_GPU=auto bash scripts/setup.sh    the GPU extra only where nvidia-smi sees a GPU (Colab)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${WB_VENV:-.venv}"
if [ "$VENV" != "none" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PY="$VENV/bin/python"
else
  PY="$(command -v python3)"
fi
PIP=("$PY" -m pip install --quiet)
# torch: keep the one that is there (CUDA on Colab/GPU boxes); otherwise the pinned 2.13.0.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "torch==2.13.0"
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
# Every later install is constrained to the torch already present, so nothing replaces it.
CONSTRAINTS="$(mktemp)"; trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==${TORCH_VERSION}" > "$CONSTRAINTS"
"${PIP[@]}" -c "$CONSTRAINTS" -r requirements-dev.txt
WB_GPU="${WB_GPU:-0}"
if [ "$WB_GPU" = "auto" ]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then WB_GPU=1; else
    WB_GPU=0; echo "no GPU found: the GPU extra (unsloth) is not installed"; fi
fi
if [ "$WB_GPU" = "1" ]; then
  "${PIP[@]}" -c "$CONSTRAINTS" -r requirements-gpu.txt
fi
"${PIP[@]}" -c "$CONSTRAINTS" --no-deps -e .
# JupyterLab in this environment saves widget state with the notebook, so a saved notebook
# reopens with every view's last state instead of "Error displaying widget: model not found".
if [ "$VENV" != "none" ]; then
  mkdir -p "$VENV/share/jupyter/lab/settings"
  cp scripts/jupyterlab-overrides.json "$VENV/share/jupyter/lab/settings/overrides.json"
fi
echo "RL Workbench ready: $("$PY" -c 'import torch,transformers,trl;print("torch",torch.__version__,"transformers",transformers.__version__,"trl",trl.__version__)')"
