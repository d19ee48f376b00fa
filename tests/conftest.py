"""Shared fixtures. Tests never touch a hub: HF_HUB_OFFLINE makes an accidental download fail fast."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
# WB_CACHE is left as the user has it: tests, notebooks and `python -m workbench` share one
# tiny-model cache (workbench.tiny.cache_root), so the README's two commands build it once.
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_path():
    """The embedded tiny model for the default task (built once, about a minute, then cached)."""
    from workbench.tiny import ensure_tiny_model

    return ensure_tiny_model(verbose=False)


@pytest.fixture(scope="session")
def tiny_policy(tiny_path):
    from workbench.models import load_policy

    return load_policy(verbose=False)
