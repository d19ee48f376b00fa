"""Weak verifiers: what a policy learns when the reward is cheaper than the truth.

Sutton's verification principle: an AI can improve a skill only as far as it can verify it. RL
with a verifier optimises *the verifier*, not the intent behind it; wherever the verifier says yes
to a wrong answer (a false positive) or no to a right one (a false negative), the policy is paid to
go there. Notebook 05 trains the tiny model once with a weak verifier from this module and once with
``verifiers.verify_math``, and watches the weak run's reward rise while its true accuracy does not.

The weak verifiers follow TRL's reward contract ``f(prompts, completions, answer, **kw)`` and are
written the way hurried verifiers are written in real code:

- ``first_number_reward`` reads the *first* number in the completion (``re.search`` where
  ``findall(...)[-1]`` was meant) and accepts it within a ``tolerance`` (a float-friendly
  comparison left on for integers). Worked solutions start with an operand, so they score 0;
  a bare guess near the truth scores 1. The tiny model learns to stop working and guess.
- ``gold_anywhere_reward`` accepts a completion whenever the gold number appears anywhere in it,
  as a whole number. It has false positives ("16+7=23 ... <answer>24" for 23, "-23" for 23), but
  the tiny model seldom writes such completions: a weak verifier is hacked where the policy can
  reach its hole.

``weak_task(task, reward)`` swaps a task's answer reward for a weak one and keeps the real verifier
as a component with weight 0: it is logged (``accuracy`` in the metrics) but pays nothing.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

from .tasks import Task, answer_reward, completion_text

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def first_number(text: str) -> float | None:
    """The first number written in ``text`` (``"7+3=10"`` -> 7.0), or None."""
    m = _NUMBER.search(text)
    return float(m.group()) if m else None


def first_number_reward(prompts, completions, answer, tolerance: float = 3.0,
                        **kwargs) -> list[float]:
    """1.0 when the completion's *first* number is within ``tolerance`` of the gold ``answer``.

    A weak verifier on purpose: worked solutions ("7+3=10 ...") are judged by their first operand
    and fail; a bare estimate ("<answer>21</answer>" for 23) passes.
    """
    out = []
    for c, a in zip(completions, answer):
        pred, gold = first_number(completion_text(c)), _float(a)
        out.append(float(pred is not None and gold is not None and abs(pred - gold) <= tolerance))
    return out


def gold_anywhere_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the gold number appears anywhere in the completion as a whole number.

    A weak verifier on purpose: "7+9=16\\n16+8=24\\n<answer>99</answer>" passes for gold 16.
    """
    out = []
    for c, a in zip(completions, answer):
        gold = re.escape(str(a).strip())
        hit = bool(gold) and re.search(rf"(?<![\d.]){gold}(?![\d.])", completion_text(c))
        out.append(float(bool(hit)))
    return out


def weak_task(task: Task, reward: Callable = first_number_reward, *, name: str = "weak",
              weight: float = 1.0) -> Task:
    """``task`` rewarded by ``reward`` (as component ``name``) instead of the real verifier.

    Components become (``name``, ``answer``, ``format``) with weights (``weight``, 0, format's):
    the real verifier still scores every completion, so the trainer's ``accuracy`` metric and
    ``evaluate`` report the *true* accuracy, but it adds nothing to the reward GRPO optimises.
    """
    names = task.component_names
    if "answer" not in names:
        raise ValueError(f"task {task.name!r} has no 'answer' component to weaken: {names}")
    others = [(f, w) for f, n, w in zip(task.reward_funcs, names, task.reward_weights)
              if n != "answer"]

    def weak(prompts, completions, **columns):
        return reward(prompts, completions, **columns)

    weak.__name__ = weak.__qualname__ = f"{name}_reward"
    weak.__doc__ = reward.__doc__
    funcs = (weak, answer_reward, *(f for f, _ in others))
    weights = (float(weight), 0.0, *(w for _, w in others))
    return dataclasses.replace(task, reward_funcs=funcs, reward_weights=weights,
                               description=f"{task.description} (rewarded by {name})")


def _float(value) -> float | None:
    try:
        return float(str(value).strip())
    except ValueError:
        return None


__all__ = ["first_number", "first_number_reward", "gold_anywhere_reward", "weak_task"]
