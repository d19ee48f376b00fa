"""The episode viewer: one episode turn by turn, model and environment visibly apart.

Two halves, like every view in ``workbench.widgets``: ``episode_rows(trace)`` is a pure function
of one trace record (a run folder's ``traces.jsonl`` line, or ``episode_traces`` of a freshly
sampled batch) and is unit-tested; ``EpisodeViewer`` lays those rows out as HTML inside
ipywidgets, with a static snapshot for saved notebooks.

Rows, in order: the prompt; every turn -- ``who`` is ``"model"`` or ``"env"``, with the turn's
number, its text and, for a model turn, the environment's verdict on it; then the end: how the
episode ended, its reward components and total.
"""
from __future__ import annotations

from typing import Any, Sequence

import ipywidgets as widgets

from .widgets import _CSS, _e, _fmt, _prompt_text, _StepBrowser

__all__ = ["episode_traces", "episode_rows", "episode_html", "EpisodeViewer"]

_EPISODE_CSS = """<style>
.wb-episode .wb-turn {border-radius: 6px; padding: 4px 8px; margin: 4px 0; max-width: 760px;}
.wb-episode .wb-who {font-size: 11px; font-weight: 600; letter-spacing: 0.03em;}
.wb-episode .wb-prompt {border-left: 4px solid #777; background: rgba(127,127,127,0.08);}
.wb-episode .wb-model {border-left: 4px solid #1565c0; background: rgba(21,101,192,0.08);}
.wb-episode .wb-model .wb-who {color: #1565c0;}
.wb-episode .wb-env {border-left: 4px solid #ef6c00; background: rgba(239,108,0,0.08);
  margin-left: 32px;}
.wb-episode .wb-env .wb-who {color: #ef6c00;}
.wb-episode .wb-env pre {font-style: italic;}
.wb-episode .wb-end {border-top: 1px solid rgba(127,127,127,0.4); margin-top: 6px;
  padding-top: 4px;}
.wb-episode .wb-verdict-tag {font-size: 11px; padding: 0 6px; border-radius: 4px;
  background: rgba(127,127,127,0.15); margin-left: 6px;}
</style>"""


# =============================================================================================
# Rows (pure functions)
# =============================================================================================

def episode_traces(episodes, rewards=None, *, rows: Sequence[dict] | None = None,
                   step: int = 0) -> list[dict]:
    """Trace records of a sampled batch (``Completions`` from ``sample_episodes``), shaped like
    a run folder's: one per episode with ``prompt``, ``completion``, ``turns``, ``ended``,
    ``reward`` and ``components`` (``rewards``: a ``RewardBreakdown``, optional)."""
    comp_rows = rewards.as_rows() if rewards is not None else [None] * len(episodes)
    g = episodes.group_size
    out = []
    for i, text in enumerate(episodes.texts):
        prompt = rows[i // g]["prompt"] if rows is not None else episodes.prompts[i]
        out.append({
            "step": step, "group": i // g, "index": i % g, "prompt": _prompt_text(prompt),
            "completion": text, "turns": episodes.turns[i],
            "ended": episodes.final_info[i]["ended"], "components": comp_rows[i],
            "reward": float(rewards.total[i]) if rewards is not None else None,
        })
    return out


def episode_rows(trace: dict) -> list[dict]:
    """One episode as rows: the prompt, each turn, the end.

    Each row: ``{"who": "prompt" | "model" | "env" | "end", "turn", "text", "verdict",
    "info"}``; the end row also has ``ended``, ``components`` and ``reward``. A single-turn
    record (no ``turns``) is its one model turn. ``turn`` counts model turns from 1; an
    environment reply carries the number of the turn it answers.
    """
    turns = trace.get("turns") or [{"role": "model", "text": trace.get("completion", ""),
                                    "info": {}}]
    rows = [{"who": "prompt", "turn": 0, "text": trace.get("prompt", ""), "verdict": None,
             "info": {}}]
    n = 0
    for t in turns:
        who = "model" if t["role"] == "model" else "env"
        n += who == "model"
        info = dict(t.get("info") or {})
        rows.append({"who": who, "turn": n, "text": t.get("text", ""),
                     "verdict": verdict_of(info) if who == "model" else None, "info": info})
    rows.append({"who": "end", "turn": n, "text": "", "verdict": None, "info": {},
                 "ended": trace.get("ended", "done" if trace.get("finished", True) else "length"),
                 "components": dict(trace.get("components") or {}),
                 "reward": trace.get("reward")})
    return rows


def verdict_of(info: dict) -> str | None:
    """A turn's verdict in a few words: ``info["verdict"]`` or its other facts as ``k=v``."""
    if not info:
        return None
    if "verdict" in info:
        return str(info["verdict"])
    return ", ".join(f"{k}={_short(v)}" for k, v in info.items())


def _short(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# =============================================================================================
# HTML
# =============================================================================================

def episode_html(rows: list[dict]) -> str:
    """The rows as a conversation: model turns on the left in blue, environment replies
    indented in orange, the verdict next to each model turn, the reward at the end."""
    if not rows:
        return f"{_CSS}<div class='wb wb-episode'>no episode</div>"
    parts = [_CSS, _EPISODE_CSS, "<div class='wb wb-episode'>"]
    for r in rows:
        if r["who"] == "end":
            comps = ", ".join(f"{_e(k)} {_fmt(v)}" for k, v in r["components"].items())
            parts.append(f"<div class='wb-end'><b>ended:</b> {_e(r['ended'])} after "
                         f"{r['turn']} model turn{'s' if r['turn'] != 1 else ''} · "
                         f"<b>reward</b> {_fmt(r['reward'])}"
                         f"{' (' + comps + ')' if comps else ''}</div>")
            continue
        label = {"prompt": "PROMPT", "model": f"MODEL · turn {r['turn']}",
                 "env": "ENVIRONMENT"}[r["who"]]
        tag = (f"<span class='wb-verdict-tag'>{_e(r['verdict'])}</span>"
               if r["verdict"] else "")
        parts.append(f"<div class='wb-turn wb-{r['who']}'><span class='wb-who'>{label}</span>"
                     f"{tag}<pre>{_e(r['text'])}</pre></div>")
    parts.append("</div>")
    return "".join(parts)


# =============================================================================================
# View
# =============================================================================================

class EpisodeViewer(_StepBrowser):
    """Episodes of a run (or ``episode_traces``) one at a time; pick the step and the episode.

    traces: a ``Run``, a run folder or trace records. ``.show(step, episode)`` switches (episode
    = row within the step, siblings adjacent); ``.rows`` holds the current ``episode_rows``.
    """

    def __init__(self, traces, step: int | None = None, episode: int = 0):
        picker = widgets.BoundedIntText(value=0, min=0, max=0, description="episode",
                                        layout=widgets.Layout(width="170px"))
        super().__init__(traces, picker, step, episode)

    @property
    def episode_picker(self):
        return self.picker

    def episodes_at(self, step: int) -> list[dict]:
        return [t for t in self.traces if t.get("step", 0) == step]

    def _set_picker(self, step: int, episode: int) -> None:
        self.picker.max = max(0, len(self.episodes_at(step)) - 1)
        self.picker.value = min(episode, self.picker.max)

    def _rows(self, step: int, episode: int) -> tuple[list[dict], str]:
        at = self.episodes_at(step)
        rows = episode_rows(at[min(episode, len(at) - 1)]) if at else []
        return rows, episode_html(rows)
