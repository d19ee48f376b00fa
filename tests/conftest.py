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


@pytest.fixture
def start_then_sigkill():
    """``start_then_sigkill(cmd, out, after_lines=, log=)``, see ``_start_then_sigkill``."""
    return _start_then_sigkill


def _start_then_sigkill(cmd: list[str], out: Path, *, after_lines: int, log: Path,
                        timeout_s: float = 300, env: dict | None = None) -> int:
    """Run ``cmd`` (a training command writing ``out``), SIGKILL it once its metrics.jsonl holds
    ``after_lines`` steps (or it ended), and return how many steps it had recorded."""
    import subprocess
    import time

    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    metrics, deadline = out / "metrics.jsonl", time.time() + timeout_s
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_text().count("\n") >= after_lines:
                break
            time.sleep(0.02)
        proc.kill()                                        # SIGKILL (no-op once it exited)
        proc.wait()
    return metrics.read_text().count("\n") if metrics.exists() else 0
