"""Reward components: score completions with several named reward functions, kept separate.

Every reward function follows TRL's contract ``f(prompts, completions, **columns) -> list[float]``
(``None`` for a completion it does not apply to). Components stay separate -- ``answer``,
``format``, ... -- so a learner (and the widgets) can see *why* a completion scored what it did;
the weighted total is what GRPO turns into advantages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from .tasks import reward_component_name


@dataclass(frozen=True)
class RewardBreakdown:
    """Rewards of N completions, per component and in total."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    components: Tensor          # (N, C) one column per component; NaN where a function abstained
    total: Tensor               # (N,) sum_c weight_c * component_c, abstentions counted as 0

    def component(self, name: str) -> Tensor:
        return self.components[:, self.names.index(name)]

    def as_rows(self) -> list[dict[str, float]]:
        """One dict per completion: component name -> value (None where abstained)."""
        rows = []
        for r in self.components.tolist():
            rows.append({n: (None if math.isnan(v) else v) for n, v in zip(self.names, r)})
        return rows


def score_completions(reward_funcs: Sequence[Callable], prompts: list, completions: list, *,
                      weights: Sequence[float] | None = None, columns: dict | None = None
                      ) -> RewardBreakdown:
    """Call every reward function on the batch and combine.

    prompts / completions: N each (siblings adjacent, as sampled). columns: extra dataset columns
    (``answer`` …), each a list of N values -- what TRL passes as ``**kwargs``.
    """
    columns = columns or {}
    weights = tuple(float(w) for w in (weights if weights is not None else [1.0] * len(reward_funcs)))
    if len(weights) != len(reward_funcs):
        raise ValueError(f"{len(reward_funcs)} reward functions but {len(weights)} weights")
    names = tuple(reward_component_name(f) for f in reward_funcs)
    if len(set(names)) != len(names):
        raise ValueError(f"reward functions need distinct names, got {names}")
    n = len(completions)
    cols = []
    for fn, name in zip(reward_funcs, names):
        values = fn(prompts=prompts, completions=completions, **columns)
        if values is None or len(values) != n:
            raise ValueError(f"reward function {name!r} returned "
                             f"{'None' if values is None else len(values)} values for {n} completions")
        cols.append([math.nan if v is None else float(v) for v in values])
    components = torch.tensor(cols, dtype=torch.float32).T.reshape(n, len(names))   # (N, C)
    w = torch.tensor(weights, dtype=torch.float32)
    total = (torch.nan_to_num(components, nan=0.0) * w).sum(dim=1)                  # (N,)
    return RewardBreakdown(names=names, weights=weights, components=components, total=total)


def accuracy_of(breakdown: RewardBreakdown, component: str = "answer") -> float | None:
    """Share of completions the verifier judged correct (component value 1), or None."""
    if component not in breakdown.names:
        return None
    col = breakdown.component(component)
    col = col[~torch.isnan(col)]
    return float((col >= 1.0).float().mean()) if col.numel() else None


EPISODE_COLUMNS = ("turns", "final_info")


def reward_inputs(rows: list[dict], episodes) -> tuple[list, list, dict]:
    """TRL-contract inputs ``(prompts, completions, columns)`` for sampled episodes.

    rows: the P dataset rows sampled; episodes: their ``Completions`` (P * group_size rows,
    siblings adjacent). ``completions`` is the model's text of each episode (a one-message chat
    when the prompt is a chat, as TRL passes it); ``columns`` holds the dataset's other columns
    repeated per episode, plus ``turns`` and ``final_info`` (see ``workbench.envs``).
    """
    clash = set(EPISODE_COLUMNS) & set(rows[0])
    if clash:
        raise ValueError(f"dataset column(s) {sorted(clash)} clash with the episode columns "
                         f"reward functions receive; rename them")
    expanded = [r for r in rows for _ in range(episodes.group_size)]
    if not isinstance(rows[0]["prompt"], str):
        completions = [[{"role": "assistant", "content": t}] for t in episodes.texts]
    else:
        completions = list(episodes.texts)
    columns = {k: [r[k] for r in expanded] for k in rows[0] if k != "prompt"}
    columns["turns"] = episodes.turns
    columns["final_info"] = episodes.final_info
    return [r["prompt"] for r in expanded], completions, columns
