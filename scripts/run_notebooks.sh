#!/usr/bin/env bash
# Execute the notebooks in place on the tiny default, so the committed outputs are real results.
#   bash scripts/run_notebooks.sh                                     every notebook, in order
#   bash scripts/run_notebooks.sh notebooks/04_training_with_grpo.ipynb   only these
# Widget outputs keep their static snapshot (HTML or PNG: what GitHub shows) and drop the
# live-widget reference, which would only say "model not found" once the kernel is gone.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export WB_CACHE="${WB_CACHE:-$PWD/.cache/rl-workbench}"
PY="${WB_PYTHON:-.venv/bin/python}"
if [ "$#" -eq 0 ]; then set -- notebooks/[0-9]*.ipynb; fi
exec "$PY" - "$@" <<'PYTHON'
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET = "application/vnd.jupyter.widget-view+json"
MAX_OUTPUT = 200_000          # bytes per output; tests/test_notebooks_meta.py checks it too

for name in sys.argv[1:]:
    path = Path(name)
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=False,
                   store_widget_state=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            data = out.get("data", {})
            if WIDGET in data:
                if not {"text/html", "image/png"} & set(data):
                    continue                   # a bare widget (e.g. a progress bar): no record
                del data[WIDGET]
            out.get("metadata", {}).pop("transient", None)
            kept.append(out)
        cell.outputs = kept
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    sizes = [len(nbformat.writes(nbformat.v4.new_notebook(cells=[c]))) for c in nb.cells]
    print(f"{path}: {time.time() - start:.0f} s, {path.stat().st_size // 1024} KB"
          f" (largest cell {max(sizes) // 1024} KB)", flush=True)
    if max(sizes) > MAX_OUTPUT:
        sys.exit(f"{path}: a cell's output is over {MAX_OUTPUT // 1000} KB; make it smaller")
PYTHON
