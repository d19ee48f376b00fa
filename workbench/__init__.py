"""RL Workbench: GRPO on language models, small enough to read, real enough to run.

The names a script needs are importable from here (lazily, so ``import workbench`` is cheap)::

    import workbench as wb

    policy = wb.load_policy()                       # the embedded tiny model (built once, cached)
    task = wb.get_task("sum")
    group = wb.sample_group(policy.model, policy.tokenizer, task.train["prompt"][:2],
                            group_size=4, max_new_tokens=48)
    rewards = wb.score_completions(task, task.train["prompt"][:2], group.texts,
                                   answer=task.train["answer"][:2])
    wb.GRPOTrainer(wb.TrainSettings(steps=1), policy=policy, task=task).step()

Everything else lives in a module named after its concept (``workbench.grpo``, ``workbench.runs``
…); the README maps notebooks to modules.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

_EXPORTS = {
    "TrainSettings": "settings", "ModelSettings": "settings", "TaskSettings": "settings",
    "GRPOSettings": "settings", "SettingsError": "settings", "notebook_mode": "settings",
    "ensure_tiny_model": "tiny", "TinySpec": "tiny",
    "load_policy": "models", "Policy": "models",
    "get_task": "tasks", "Task": "tasks",
    "sample_group": "rollouts", "Completions": "rollouts",
    "score_completions": "rewards", "RewardBreakdown": "rewards",
    "group_advantages": "grpo", "grpo_loss": "grpo",
    "GRPOTrainer": "trainer", "train": "trainer", "evaluate_policy": "trainer",
    "Run": "runs",
    "SFTSettings": "settings", "SFTTrainer": "sft", "train_sft": "sft",
    "teacher_traces": "sft", "load_traces": "sft",
    "pass_at_k": "evals", "sample_pass_at_k": "evals", "compare_arms": "distill",
}

__all__ = sorted(_EXPORTS)


def _check_sibling(name: str) -> None:
    """RL Workbench ships two import packages, ``workbench`` and ``verifiers``; both names also
    exist on PyPI (``verifiers`` is an RL-environments library). If another install shadows
    ours, say so plainly instead of failing later with a confusing AttributeError."""
    ours = Path(__file__).resolve().parent.parent / name
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    origin = Path(spec.origin).resolve().parent if spec is not None and spec.origin else None
    if origin is not None and origin != ours and ours.is_dir():
        raise ImportError(
            f"'import {name}' finds another package at {origin}, not RL Workbench's own "
            f"{name}/ at {ours}: a different '{name}' from PyPI is installed in this "
            f"environment. Uninstall it (pip uninstall {name}) or use RL Workbench in its own "
            "virtual environment (bash scripts/setup.sh makes .venv).")


_check_sibling("verifiers")


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
