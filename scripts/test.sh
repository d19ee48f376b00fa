#!/usr/bin/env bash
# Run the whole test suite (unit tests, training smoke tests, every notebook under nbmake)
# offline, with the project's virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${WB_PYTHON:-.venv/bin/python}"
exec "$PY" -m pytest -q --nbmake --nbmake-timeout=900 tests notebooks "$@"
