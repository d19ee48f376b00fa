"""pass@k: how often at least one of k samples is right, estimated without bias from n >= k.

Drawing k samples per problem and checking whether any is right gives a noisy estimate; drawing
n >= k once and counting the c right ones gives the unbiased one (Chen et al. 2021, used by Yue
et al. 2025 to compare base and RL models at large k)::

    pass@k = 1 - C(n-c, k) / C(n, k)      averaged over problems

``C(n-c, k) / C(n, k)`` is the chance that k samples drawn from the n without replacement are
all wrong. The binomials overflow floats long before n = 1024; the same ratio is the product
``prod_{i=n-c+1}^{n} (1 - k/i)``, which stays in [0, 1] at every step.

Greedy held-out accuracy (one completion per problem, temperature 0) is
``workbench.trainer.evaluate_policy``; pass@1 here is the *sampled* accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .rewards import reward_inputs
from .rollouts import sample_episodes
from .tasks import Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` right among ``n`` samples (``1 <= k <= n``)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:                                   # every k-subset holds a right one
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def answer_reward_of(task: Task):
    """The task's ``answer`` reward component (the verifier), or its first one."""
    return next((f for f, name in zip(task.reward_funcs, task.component_names)
                 if name == "answer"), task.reward_funcs[0])


@dataclass(frozen=True)
class PassAtK:
    """pass@k curve of one model on one problem set, and the counts it came from."""

    label: str
    ks: tuple[int, ...]
    values: tuple[float, ...]         # mean pass@k over problems, one per k
    n: int                            # samples per problem
    correct: tuple[int, ...]          # right samples per problem
    temperature: float
    generated_tokens: int             # tokens sampled (the evaluation's own cost)

    def at(self, k: int) -> float:
        return self.values[self.ks.index(k)]

    def as_row(self) -> dict:
        return {"label": self.label, "n": self.n, "problems": len(self.correct),
                **{f"pass@{k}": round(v, 4) for k, v in zip(self.ks, self.values)}}


def default_ks(n: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to ``n`` (and ``n`` itself)."""
    ks = [2 ** i for i in range(int(math.log2(n)) + 1)]
    return tuple(ks if ks[-1] == n else ks + [n])


@torch.no_grad()
def sample_pass_at_k(policy, task: Task, *, n: int = 64, ks: tuple[int, ...] | None = None,
                     problems: int = 50, split: str = "test", temperature: float = 1.0,
                     top_p: float = 1.0, max_new_tokens: int = 48, batch_size: int = 512,
                     seed: int = 0, label: str = "") -> PassAtK:
    """Sample ``n`` completions for each of the first ``problems`` rows of ``task``'s ``split``,
    judge each with the task's answer reward, and estimate pass@k for every k in ``ks``
    (default 1, 2, 4, ..., n). The same seed gives the same samples."""
    ks = tuple(ks or default_ks(n))
    data = getattr(task, split)
    rows = [data[i] for i in range(min(problems, len(data)))]
    answer_fn = answer_reward_of(task)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    per_call = max(1, batch_size // n)                  # problems per sampling call
    correct, tokens = [], 0
    for i in range(0, len(rows), per_call):
        part = rows[i:i + per_call]
        comps = sample_episodes(policy.model, policy.tokenizer, part, env=task.env,
                                group_size=n, max_new_tokens=max_new_tokens,
                                temperature=temperature, top_p=top_p, generator=gen,
                                device=policy.device)
        prompts, completions, cols = reward_inputs(part, comps)
        right = [float(x or 0.0) >= 1.0 for x in answer_fn(prompts=prompts,
                                                            completions=completions, **cols)]
        correct += [sum(right[j * n:(j + 1) * n]) for j in range(len(part))]
        tokens += int(comps.action_mask.sum())
    values = tuple(sum(pass_at_k(n, c, k) for c in correct) / max(1, len(correct)) for k in ks)
    return PassAtK(label, ks, values, n, tuple(correct), temperature, tokens)


def plot_pass_at_k(curves: list[PassAtK], *, ax=None, title: str = ""):
    """pass@k against k (log scale), one line per curve; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    for c in curves:
        ax.plot(c.ks, c.values, marker="o", ms=3, label=c.label or None)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if any(c.label for c in curves):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


__all__ = ["PassAtK", "answer_reward_of", "default_ks", "pass_at_k", "plot_pass_at_k",
           "sample_pass_at_k"]
