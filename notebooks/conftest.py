"""``pytest --nbmake notebooks/``: every notebook runs offline on the tiny default, and its kernel
shares the tiny-model cache with the unit tests and the command line (``workbench.tiny.cache_root``:
``WB_CACHE``, else ``~/.cache/rl-workbench``), so the model is built once per machine.

Kernels inherit this process's environment, which is why setting it here is enough.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
