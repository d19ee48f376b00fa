"""Graduating to an existing engine: the same tasks and rewards in TRL, veRL and OpenRLHF.

Our engine (``workbench.trainer``) is for one machine and for reading. When a run outgrows it --
a 7B model, 8 GPUs, a node with a vLLM server -- the task and its reward functions move to an
engine built for that, unchanged. These modules are thin adapters, not an engine of our own:

================== ==================================================== ========================
module             what it hands over                                   launch
================== ==================================================== ========================
``scale.trl``      ``grpo_config(settings)`` (the README glossary as    ``accelerate launch
                   code), the task's reward functions as they are,      --config_file configs/
                   LoRA / 4-bit through TRL's own options, and          accelerate/… -m
                   ``RunFolderCallback``: TRL's completions and         workbench trl-train``
                   metrics written as our run folder; a task with an
                   environment through ``episode_rollout`` (TRL's
                   ``rollout_func``, environment tokens masked)
``scale.verl``     ``compute_score(data_source, solution_str,           ``python -m verl.trainer
                   ground_truth, extra_info)`` over our verifiers;      .main_ppo …``
                   ``export_parquet(task, folder)`` in veRL's row
                   format; ``config_lines`` for ``custom_reward_function``
``scale.openrlhf`` ``reward_func(queries, prompts, labels)`` (the       ``python -m openrlhf.cli
                   response sliced out of the query); ``launch_flags``  .train_ppo_ray …``
================== ==================================================== ========================

All three score a completion with the same code: ``score_completion`` (below) calls the task's
own reward functions, TRL's contract, on one completion, so the three engines agree with
``workbench.rewards.score_completions`` to the last bit (``tests/test_scale.py`` checks it).
"""
from __future__ import annotations

from typing import Any


def score_completion(task, completion: str, answer: str, *, prompt: Any = "",
                     columns: dict | None = None) -> dict[str, float | None]:
    """The task's reward components and weighted total for ONE completion.

    task: a ``workbench.tasks.Task``; completion: the response text only (no prompt);
    answer: the gold. Returns ``{"<component>": value or None, ..., "total": float}`` where the
    total counts an abstaining component (None) as 0 -- as ``score_completions`` and TRL do.
    """
    from ..rewards import score_completions

    cols = {k: [v] for k, v in (columns or {}).items()}
    cols["answer"] = [str(answer)]
    breakdown = score_completions(task.reward_funcs, [prompt], [completion],
                                  weights=task.reward_weights, columns=cols)
    out: dict[str, float | None] = dict(breakdown.as_rows()[0])
    out["total"] = float(breakdown.total[0])
    return out


def task_rewards(data_source: str, **knobs):
    """The reward functions and weights of a task named ``data_source``, without its data.

    ``"sum"`` / ``"linear"`` (+ difficulty ``knobs``) as ``get_task`` builds them; ``"gsm8k"`` and
    ``"math"`` (optionally ``"gsm8k:PATH"``: the path is not read) get the boxed-answer rewards of
    ``load_jsonl_task``. Cached per process: veRL and OpenRLHF call a reward once per sample.
    Returns a ``Task``-like object with ``reward_funcs`` and ``reward_weights``.
    """
    kind = data_source.split(":", 1)[0]
    key = (kind, tuple(sorted(knobs.items())))
    if key not in _REWARDS:
        from types import SimpleNamespace

        from ..tasks import TASKS, _named, answer_reward, boxed_format_reward, get_task

        if kind in TASKS:       # the reward functions do not depend on the split sizes
            task = get_task(kind, n_train=1, n_test=1, **knobs)
            _REWARDS[key] = SimpleNamespace(reward_funcs=task.reward_funcs,
                                            reward_weights=task.reward_weights)
        elif kind in ("gsm8k", "math"):   # load_jsonl_task's rewards
            _REWARDS[key] = SimpleNamespace(
                reward_funcs=(answer_reward, _named(boxed_format_reward, "format_reward")),
                reward_weights=(1.0, 0.1))
        else:
            raise ValueError(f"unknown data_source {data_source!r}: expected one of "
                             f"{', '.join(sorted(TASKS))}, gsm8k, math")
    return _REWARDS[key]


_REWARDS: dict = {}

__all__ = ["score_completion", "task_rewards"]
