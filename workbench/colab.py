"""Colab set-up check: does the runtime need a restart after ``scripts/setup.sh``?

Colab starts with its own versions of torch, transformers, numpy… already installed, and some of
them already imported by the runtime. ``pip install`` replaces the files on disk, but a module that
was imported before keeps running the old code until the runtime restarts — the source of
confusing errors later. ``restart_needed()`` compares what is imported with what is now installed.
"""
from __future__ import annotations

import importlib.metadata
import sys

# distributions whose import names differ from their names on PyPI
_IMPORT_NAMES = {"huggingface_hub": "huggingface_hub", "pyyaml": "yaml", "pillow": "PIL"}
WATCHED = ("torch", "transformers", "tokenizers", "accelerate", "peft", "trl", "datasets",
           "bitsandbytes", "numpy", "sympy", "matplotlib", "ipywidgets", "huggingface_hub")


def stale_modules(names=WATCHED) -> list[str]:
    """Packages imported in this process whose installed version is now a different one."""
    stale = []
    for dist in names:
        module = sys.modules.get(_IMPORT_NAMES.get(dist, dist))
        loaded = getattr(module, "__version__", None) if module is not None else None
        if loaded is None:
            continue
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        if str(loaded).split("+")[0] != installed.split("+")[0]:
            stale.append(f"{dist} {loaded} -> {installed}")
    return stale


def restart_needed(*, verbose: bool = True) -> bool:
    """True (and says so) when this runtime must restart before the notebook goes on."""
    stale = stale_modules()
    if verbose:
        if stale:
            print("[workbench] restart the runtime now (Runtime -> Restart session), then run "
                  "this notebook again from the top: already imported, then replaced by the "
                  "install: " + ", ".join(stale))
        else:
            print("[workbench] set-up done; no restart needed")
    return bool(stale)
