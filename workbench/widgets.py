"""Look inside rewards, groups and runs: pure row builders plus thin ipywidgets views.

Every view has two halves. The *rows* half is a pure function of plain data (trace dicts, metric
dicts, a verdict) and is unit-tested; the *view* half only lays those rows out as HTML inside
ipywidgets, so what a learner sees is exactly what the tests checked.

================== ===================================== =====================================
view               rows                                   shows
================== ===================================== =====================================
VerifierPlayground ``verdict_path(completion, gold)``     extracted -> normalised -> gold ->
                                                          decision
GroupInspector     ``group_rows(traces, step, group)``    one prompt's completions side by side:
                                                          components, total, advantage, verdict
                                                          path, the zero-std flag
TraceBrowser       ``trace_rows(run, step=, correct=,     every completion of a run, filtered;
                   reward_range=, search=)``              opens any group in a GroupInspector
TrainingDashboard  ``dashboard_series(history)``          progress and live plots while training
                                                          (a ``GRPOTrainer`` callback; silent in
                                                          scripts)
================== ===================================== =====================================

``batch_traces`` turns a freshly sampled and scored batch into the same trace rows a run folder
holds, so the group inspector works on a notebook experiment as well as on a run.

Views also carry a static snapshot in their display data (HTML; the dashboard's latest figure as
a PNG), so a notebook saved with outputs still shows them where widgets do not run (GitHub). All
text is HTML-escaped.

``notebook_mode(MODEL)`` (from ``workbench.settings``, importable here too) is the notebooks' one
visible decision: the tiny default, or a real model where a CUDA GPU is present.
"""
from __future__ import annotations

import html
import io
import math
import re
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import ipywidgets as widgets

from .settings import NotebookMode, notebook_mode  # noqa: F401  (re-exported)

__all__ = [
    "verdict_rows", "verdict_path", "batch_traces", "group_rows", "trace_rows",
    "dashboard_series", "VerifierPlayground", "GroupInspector", "TraceBrowser",
    "TrainingDashboard", "in_notebook", "NotebookMode", "notebook_mode", "inline_styles",
]

_STAGES = ("extracted", "normalised", "gold", "decision")


# =============================================================================================
# Rows (pure functions)
# =============================================================================================

def verdict_rows(verdict) -> list[dict]:
    """A ``MathVerdict`` as four rows: extracted -> normalised -> gold -> decision.

    Each row: ``{"stage", "value", "detail": [verdict steps that belong to this stage]}``; every
    step of the verdict lands in exactly one row, in order. ``value`` is None where the verifier
    stopped before that stage (e.g. no answer found: nothing was normalised).
    """
    buckets: dict[str, list[str]] = {s: [] for s in _STAGES}
    stage = "extracted"
    for step in verdict.steps:
        if step.startswith("normalised ->"):
            stage = "normalised"
        elif step.startswith("gold kind:"):
            stage = "gold"
        elif stage in ("normalised", "gold"):
            stage = "decision"
        buckets[stage].append(step)
    decision = "correct" if verdict.correct else "wrong"
    return [
        {"stage": "extracted", "value": verdict.extracted, "detail": buckets["extracted"]},
        {"stage": "normalised", "value": verdict.pred_normalised, "detail": buckets["normalised"]},
        {"stage": "gold", "value": verdict.gold_normalised,
         "detail": buckets["gold"] or ([f"kind: {verdict.kind}"] if verdict.kind else [])},
        {"stage": "decision", "value": f"{decision} ({verdict.reason})",
         "detail": buckets["decision"]},
    ]


def verdict_path(completion: str, gold: str, **options) -> list[dict]:
    """``verify_math(completion, gold, **options)`` as rows (see ``verdict_rows``)."""
    from verifiers import verify_math

    return verdict_rows(verify_math(completion, str(gold), **options))


def batch_traces(prompts: Sequence, texts: Sequence[str], rewards, advantages, *,
                 group_size: int, answers: Sequence[str] | None = None, step: int = 0,
                 lengths: Sequence[int] | None = None,
                 finished: Sequence[bool] | None = None) -> list[dict]:
    """Trace rows (the run folder's ``traces.jsonl`` shape) for one sampled batch.

    prompts: one per *completion* (N, siblings adjacent) or one per group (N / group_size);
    texts: N completions; rewards: a ``RewardBreakdown``; advantages: (N,) tensor or list;
    answers: gold per completion or per group.
    """
    n = len(texts)
    per_group = n // group_size

    def expand(values, what):
        values = list(values)
        if len(values) == per_group and per_group != n:
            return [v for v in values for _ in range(group_size)]
        if len(values) != n:
            raise ValueError(f"{what}: {len(values)} values for {n} completions "
                             f"(give one per completion or one per group)")
        return values

    prompts = [_prompt_text(p) for p in expand(prompts, "prompts")]
    answers = expand(answers, "answers") if answers is not None else [""] * n
    comps = rewards.as_rows()
    total = [float(x) for x in rewards.total]
    adv = [float(x) for x in advantages]
    out = []
    for i, text in enumerate(texts):
        out.append({
            "step": step, "group": i // group_size, "index": i % group_size,
            "prompt": prompts[i], "completion": text, "answer": str(answers[i]),
            "components": comps[i], "reward": total[i], "advantage": adv[i],
            "length": int(lengths[i]) if lengths is not None else None,
            "finished": bool(finished[i]) if finished is not None else None,
        })
    return out


def group_rows(traces: Iterable[dict], step: int, group: int, *,
               verify: bool = True) -> list[dict]:
    """The completions of one prompt at one step, in sampling order, ready to show side by side.

    traces: trace rows (``Run.traces()`` or ``batch_traces``). Each returned row is the trace row
    plus ``correct`` (the ``answer`` component, or the verifier's decision when there is none),
    ``zero_std`` (True on every row when all siblings scored the same: no learning signal) and,
    with ``verify``, ``verdict``: the verdict path rows for this completion and its gold.
    Returns [] when the run has no such step/group.
    """
    rows = sorted((dict(t) for t in traces if t["step"] == step and t["group"] == group),
                  key=lambda t: t["index"])
    if not rows:
        return []
    rewards = [r["reward"] for r in rows]
    flat = max(rewards) - min(rewards) < 1e-8
    for r in rows:
        r["zero_std"] = flat
        if verify:
            r["verdict"] = verdict_path(r["completion"], r.get("answer", ""))
        r["correct"] = _correct(r)
    return rows


def trace_rows(run, step: int | None = None, correct: bool | None = None,
               reward_range: tuple[float, float] | None = None, search: str | None = None,
               ) -> list[dict]:
    """Trace rows of a run, filtered; what the trace browser lists.

    run: a ``Run``, a run folder, or a list of trace rows. step: only that step (None: all).
    correct: True / False keeps completions the ``answer`` component judged right / wrong (rows
    without that component are dropped by either). reward_range: (low, high), inclusive.
    search: case-insensitive text that must appear in the completion or the prompt.
    Rows keep the trace's fields and gain ``correct``; order is step, group, index.
    """
    traces = _traces_of(run, step)
    needle = search.lower() if search else None
    out = []
    for t in traces:
        if step is not None and t["step"] != step:
            continue
        ok = _correct(t)
        if correct is not None and ok is not correct:
            continue
        if reward_range is not None and not reward_range[0] <= t["reward"] <= reward_range[1]:
            continue
        if needle and needle not in t["completion"].lower() and \
                needle not in t.get("prompt", "").lower():
            continue
        out.append(dict(t, correct=ok))
    out.sort(key=lambda t: (t["step"], t["group"], t["index"]))
    return out


_SERIES = {
    "reward": "reward_mean", "accuracy": "accuracy", "completion_length": "completion_length",
    "kl": "kl", "clip_fraction": "clip_fraction", "entropy": "entropy",
    "zero_std_fraction": "zero_std_fraction", "step_seconds": "step_seconds",
    "heldout_accuracy": "heldout_accuracy",
}
# Why a health panel can be flat at zero under the defaults -- said in the panel itself.
FLAT_PANEL_NOTES = {
    "kl": "flat at 0: beta = 0 (the default)\nkeeps no reference model,\nso no KL is computed",
    "clip_fraction": "flat at 0: num_iterations = 1\nuses each batch once, so the\n"
                     "ratio is exactly 1: no clipping",
}


def dashboard_series(history: Sequence[dict]) -> dict[str, list]:
    """Per-step metrics as plot-ready series: ``{"step": [...], "reward": [...], ...}``.

    history: the trainer's metric dicts (``GRPOTrainer.history`` or ``Run.metrics()``), in order.
    Keys: step, reward (weighted total), ``reward/<component>`` for each component, accuracy,
    completion_length, kl, clip_fraction, entropy, zero_std_fraction, step_seconds. A metric a
    step lacks (or logged as None) is NaN, so every series has one value per step.
    """
    out: dict[str, list] = {"step": [int(m["step"]) for m in history]}
    for key, metric in _SERIES.items():
        out[key] = [_num(m.get(metric)) for m in history]
    components = sorted({k.split("/")[1] for m in history for k in m
                         if k.startswith("reward/") and k.endswith("/mean")})
    for name in components:
        out[f"reward/{name}"] = [_num(m.get(f"reward/{name}/mean")) for m in history]
    return out


# =============================================================================================
# HTML (escaped; shared by the views and their static snapshots)
# =============================================================================================

_CSS = """<style>
.wb {font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; line-height: 1.4;
  color: var(--jp-ui-font-color1, #222);}
.wb-cards {display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; margin-top: 4px;}
.wb-card {border: 1px solid #ccc; border-radius: 6px; padding: 6px 8px; width: 250px;}
.wb-card.wb-ok {border-left: 5px solid #2e7d32;} .wb-card.wb-bad {border-left: 5px solid #c62828;}
.wb pre {white-space: pre-wrap; word-break: break-word; margin: 4px 0; padding: 4px;
  background: rgba(127, 127, 127, 0.12); font-size: 12px; max-height: 12em; overflow: auto;}
.wb table {border-collapse: collapse; font-size: 12px;}
.wb td, .wb th {padding: 2px 6px; border-bottom: 1px solid rgba(127, 127, 127, 0.2);
  text-align: left; vertical-align: top;}
.wb .wb-num {text-align: right; font-variant-numeric: tabular-nums;}
.wb .wb-flag {background: #fff3cd; color: #6b4e00; padding: 2px 6px; border-radius: 4px;
  display: inline-block; margin-top: 2px;}
.wb .wb-muted, .wb .wb-stage {color: #777;} .wb .wb-nl {color: #aaa; padding: 0 2px;}
.wb .wb-yes {color: #2e7d32;} .wb .wb-no {color: #c62828;}
.wb .wb-path {margin-top: 4px; font-size: 12px;} .wb details {color: #777; font-size: 11px;}
.wb details ol {margin: 2px 0; padding-left: 18px;}
</style>"""


# The same look as ``_CSS``, as inline ``style`` attributes: renderers that sanitise HTML (GitHub's
# notebook view) drop <style> blocks but keep attributes, so the static snapshots carry these.
_TAG_STYLES = {
    "table": "border-collapse: collapse; font-size: 12px;",
    "td": "padding: 2px 6px; border-bottom: 1px solid #ddd; text-align: left; "
          "vertical-align: top;",
    "th": "padding: 2px 6px; border-bottom: 1px solid #ddd; text-align: left;",
    "pre": "white-space: pre-wrap; word-break: break-word; margin: 4px 0; padding: 4px; "
           "background: #f0f0f0; font-size: 12px;",
}
_CLASS_STYLES = {
    "wb": "font-family: sans-serif; font-size: 13px; line-height: 1.4; color: #222;",
    "wb-cards": "display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start;",
    "wb-card": "border: 1px solid #ccc; border-radius: 6px; padding: 6px 8px; width: 250px; "
               "display: inline-block; vertical-align: top; margin: 2px;",
    "wb-ok": "border-left: 5px solid #2e7d32;", "wb-bad": "border-left: 5px solid #c62828;",
    "wb-num": "text-align: right; font-variant-numeric: tabular-nums;",
    "wb-flag": "background: #fff3cd; color: #6b4e00; padding: 2px 6px; border-radius: 4px;",
    "wb-muted": "color: #777;", "wb-stage": "color: #777;", "wb-nl": "color: #aaa;",
    "wb-yes": "color: #2e7d32;", "wb-no": "color: #c62828;",
    "wb-path": "margin-top: 4px; font-size: 12px;",
}
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>.*?</style>", re.S | re.I)
_START_TAG = re.compile(r"<([a-zA-Z][\w-]*)((?:\s[^<>]*)?)>")
_CLASS_ATTR = re.compile(r"""\bclass=(['"])([^'"]*)\1""")


def inline_styles(html_text: str) -> str:
    """``html_text`` with <style> blocks removed and the widgets' classes written out as inline
    ``style`` attributes, so a sanitising renderer still shows cards, colours and tables."""

    def tag(m: re.Match) -> str:
        name, attrs = m.group(1), m.group(2) or ""
        if "style=" in attrs:
            return m.group(0)
        found = _CLASS_ATTR.search(attrs)
        classes = found.group(2).split() if found else []
        style = _TAG_STYLES.get(name.lower(), "") + "".join(_CLASS_STYLES.get(c, "")
                                                            for c in classes)
        if not style:
            return m.group(0)
        return f"<{name}{attrs} style='{style}'>"

    return _START_TAG.sub(tag, _STYLE_BLOCK.sub("", html_text))


def _e(value: Any) -> str:
    """Text as HTML: control characters shown as escapes (a terminal escape or a bidi override in
    model or program output cannot restyle or reorder the view), then HTML-escaped."""
    from verifiers.code import printable

    return html.escape(printable("" if value is None else str(value)))


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:+.{digits}f}" if digits and x < 0 else f"{x:.{digits}f}"
    return str(x)


def verdict_html(rows: list[dict]) -> str:
    """The verdict path as a small table: stage, value, what the verifier did."""
    cells = []
    for r in rows:
        detail = "<br>".join(_e(d) for d in r["detail"])
        cells.append(f"<tr><th>{_e(r['stage'])}</th><td><code>{_e(r['value'])}</code></td>"
                     f"<td class='wb-muted'>{detail}</td></tr>")
    return "<table class='wb-verdict'>" + "".join(cells) + "</table>"


def path_html(rows: list[dict]) -> str:
    """The verdict path on one line (extracted -> normalised -> gold -> decision), with the
    verifier's steps folded underneath."""
    chain = " → ".join(
        f"<span class='wb-stage'>{_e(r['stage'])}</span> <code>{_e(r['value'])}</code>"
        for r in rows[:-1])
    decision = rows[-1]["value"] or ""
    cls = "wb-yes" if decision.startswith("correct") else "wb-no"
    steps = "".join(f"<li>{_e(d)}</li>" for r in rows for d in r["detail"])
    return (f"<div class='wb-path'>{chain} → <b class='{cls}'>{_e(decision)}</b>"
            f"<details><summary>verifier steps</summary><ol>{steps}</ol></details></div>")


def group_html(rows: list[dict]) -> str:
    """One prompt's completions as cards side by side (the group inspector's body)."""
    if not rows:
        return f"{_CSS}<div class='wb wb-group'>no completions for this step and group</div>"
    head = rows[0]
    flag = ("<div class='wb-flag'>zero std: every completion scored the same, so every "
            "advantage is 0 — this group teaches nothing</div>" if head["zero_std"] else "")
    parts = [_CSS, "<div class='wb wb-group'>",
             f"<div><b>step {_e(head['step'])} · group {_e(head['group'])}</b> · prompt "
             f"<code>{_e(head['prompt'])}</code> · gold <code>{_e(head.get('answer'))}</code>"
             f"</div>{flag}<div class='wb-cards'>"]
    for r in rows:
        cls = {True: "wb-ok", False: "wb-bad"}.get(r["correct"], "")
        comps = " · ".join(f"{_e(k)} <span class='wb-num'>{_fmt(v)}</span>"
                           for k, v in (r.get("components") or {}).items())
        path = path_html(r["verdict"]) if r.get("verdict") else ""
        truncated = "" if r.get("finished", True) is not False else ", truncated"
        parts.append(
            f"<div class='wb-card {cls}'><div><b>#{_e(r['index'])}</b> "
            f"<span class='wb-muted'>{_e(r.get('length'))} tokens{truncated}</span></div>"
            f"<pre class='wb-completion'>{_e(r['completion'])}</pre>"
            f"<div class='wb-muted'>{comps}</div>"
            f"<div>total <b class='wb-num wb-reward'>{_fmt(r['reward'])}</b> · advantage "
            f"<b class='wb-num wb-advantage'>{_fmt(r['advantage'])}</b></div>{path}</div>")
    parts.append("</div></div>")
    return "".join(parts)


def _one_line(text: str) -> str:
    """Escaped text with its line breaks shown as a faint ⏎ (compact table cells)."""
    return "<span class='wb-nl'>⏎</span>".join(_e(line) for line in text.split("\n"))


def traces_html(rows: list[dict], *, limit: int = 20, total: int | None = None,
                offset: int = 0) -> str:
    """A table of trace rows (the trace browser's body): ``limit`` of them from ``offset``."""
    total = len(rows) if total is None else total
    shown = rows[offset:offset + limit]
    head = ("<tr><th>step</th><th>group</th><th>#</th><th>prompt</th><th>gold</th>"
            "<th>completion</th><th>reward</th><th>advantage</th><th>correct</th></tr>")
    body = []
    for r in shown:
        mark = {True: "<span class='wb-yes'>✓</span>", False: "<span class='wb-no'>✗</span>"}
        body.append(
            f"<tr class='wb-trace'><td class='wb-num'>{_e(r['step'])}</td>"
            f"<td class='wb-num'>{_e(r['group'])}</td><td class='wb-num'>{_e(r['index'])}</td>"
            f"<td><code>{_e(r['prompt'])}</code></td><td><code>{_e(r.get('answer'))}</code></td>"
            f"<td><code class='wb-completion'>{_one_line(r['completion'])}</code></td>"
            f"<td class='wb-num wb-reward'>{_fmt(r['reward'])}</td>"
            f"<td class='wb-num'>{_fmt(r['advantage'])}</td>"
            f"<td>{mark.get(r['correct'], '–')}</td></tr>")
    span = f"{offset + 1}–{offset + len(shown)}" if shown else "0"
    more = f"<div class='wb-muted'>showing {span} of {total} matching completions</div>"
    return f"{_CSS}<div class='wb wb-traces'>{more}<table>{head}{''.join(body)}</table></div>"


# =============================================================================================
# Views
# =============================================================================================

def in_notebook() -> bool:
    """True inside a Jupyter kernel (where widgets can render), False in scripts and tests."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _Snapshot:
    """Mixin: add a static HTML snapshot to a widget's display data (for GitHub, nbviewer)."""

    def snapshot_html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        data = dict(super()._repr_mimebundle_(**kwargs) or {})
        data["text/html"] = inline_styles(self.snapshot_html())
        return data


class VerifierPlayground(_Snapshot, widgets.VBox):
    """Type a completion and a gold answer; see the verdict path update as you type.

    ``.rows`` holds the current verdict path (``verdict_path``); ``options`` go to verify_math.
    """

    def __init__(self, completion: str = "7+3=10\n10+5=15\n<answer>15</answer>",
                 gold: str = "15", **options):
        super().__init__()
        self.completion = widgets.Textarea(value=completion, description="completion",
                                           layout=widgets.Layout(width="95%", height="7em"))
        self.gold = widgets.Text(value=str(gold), description="gold")
        self.output = widgets.HTML()
        self.options = options
        self.rows: list[dict] = []
        self.completion.observe(self.refresh, names="value")
        self.gold.observe(self.refresh, names="value")
        self.refresh()
        self.children = [self.completion, self.gold, self.output]

    def refresh(self, _=None) -> None:
        self.rows = verdict_path(self.completion.value, self.gold.value, **self.options)
        self.output.value = (f"{_CSS}<div class='wb wb-playground'>{verdict_html(self.rows)}"
                             "</div>")

    def snapshot_html(self) -> str:
        return self.output.value


class _StepBrowser(_Snapshot, widgets.VBox):
    """Base of the views that show one item of one step of a run: a step dropdown, a second
    picker (``picker``: which item of that step), and an HTML body (``render``). Subclasses
    say what a step holds (``items_at``) and how an item is shown (``render``)."""

    def __init__(self, traces, picker, step: int | None, item: int):
        super().__init__()
        self.traces = _traces_of(traces)
        steps = sorted({t.get("step", 0) for t in self.traces}) or [0]
        self.step_picker = widgets.Dropdown(options=steps, value=steps[-1], description="step",
                                            layout=widgets.Layout(width="170px"))
        self.picker = picker
        self.body = widgets.HTML()
        self.rows: list[dict] = []
        self._busy = False          # set while show() moves both pickers: one refresh, not three
        self.step_picker.observe(self._on_step, names="value")
        self.picker.observe(self.refresh, names="value")
        self.children = [widgets.HBox([self.step_picker, self.picker]), self.body]
        self.show(steps[-1] if step is None else step, item)

    def _set_picker(self, step: int, item: int) -> None:
        raise NotImplementedError

    def _rows(self, step: int, item: int) -> tuple[list[dict], str]:
        raise NotImplementedError

    def show(self, step: int, item: int = 0):
        """Show item ``item`` (a group, an episode) of ``step``."""
        self._busy = True
        try:
            self.step_picker.value = step
            self._set_picker(step, item)
        finally:
            self._busy = False
        self.refresh()
        return self

    def refresh(self, _=None) -> None:
        if self._busy:
            return
        self.rows, self.body.value = self._rows(self.step_picker.value, self.picker.value)

    def _on_step(self, _=None) -> None:
        if not self._busy:
            self.show(self.step_picker.value, self.picker.value)

    def snapshot_html(self) -> str:
        return self.body.value


class GroupInspector(_StepBrowser):
    """One prompt's group of completions side by side; pick the step and the group.

    traces: a ``Run``, a run folder or trace rows (``batch_traces``). ``.show(step, group)``
    switches; ``.rows`` holds the current ``group_rows``.
    """

    def __init__(self, traces, step: int | None = None, group: int = 0):
        picker = widgets.Dropdown(options=[0], value=0, description="group",
                                  layout=widgets.Layout(width="170px"))
        super().__init__(traces, picker, step, group)

    @property
    def group_picker(self):
        return self.picker

    def groups_at(self, step: int) -> list[int]:
        return sorted({t["group"] for t in self.traces if t["step"] == step}) or [0]

    def _set_picker(self, step: int, group: int) -> None:
        groups = self.groups_at(step)
        self.picker.options = groups
        self.picker.value = group if group in groups else groups[0]

    def _rows(self, step: int, group: int) -> tuple[list[dict], str]:
        rows = group_rows(self.traces, step, group)
        return rows, group_html(rows)


class TraceBrowser(_Snapshot, widgets.VBox):
    """Every completion of a run: filter by step (slider), correctness, reward range and text;
    open any listed row's group in the group inspector below the table.

    ``.rows`` holds the current ``trace_rows``; ``.open_row(i)`` shows row ``i``'s group.
    """

    def __init__(self, run, page_size: int = 20):
        super().__init__()
        self.traces = _traces_of(run)
        self.page_size = page_size
        steps = sorted({t["step"] for t in self.traces}) or [0]
        rewards = [t["reward"] for t in self.traces] or [0.0]
        lo, hi = math.floor(min(rewards) * 10) / 10, math.ceil(max(rewards) * 10) / 10
        hi = max(hi, lo + 0.1)
        self.step_slider = widgets.IntSlider(value=steps[-1], min=steps[0],
                                             max=max(steps[-1], steps[0] + 1),
                                             description="step", continuous_update=False)
        self.all_steps = widgets.Checkbox(value=False, description="all steps", indent=False,
                                          layout=widgets.Layout(width="100px"))
        self.correct_filter = widgets.Dropdown(
            options=["all", "correct", "wrong"], value="all", description="correct",
            layout=widgets.Layout(width="180px"))
        self.reward_filter = widgets.FloatRangeSlider(
            value=(lo, hi), min=lo, max=hi, step=0.05, description="reward",
            continuous_update=False)
        self.search = widgets.Text(value="", placeholder="text in completion or prompt",
                                   description="search", continuous_update=False)
        self.picker = widgets.Dropdown(options=[], description="open",
                                       layout=widgets.Layout(width="420px"))
        self.open_button = widgets.Button(description="open in inspector", icon="search",
                                          layout=widgets.Layout(width="160px"))
        self.prev_button = widgets.Button(description="◀ previous",
                                          layout=widgets.Layout(width="110px"))
        self.next_button = widgets.Button(description="next ▶",
                                          layout=widgets.Layout(width="110px"))
        self.page_label = widgets.HTML()
        self.page = 0
        self.table = widgets.HTML()
        self.inspector = GroupInspector(self.traces)
        self.rows: list[dict] = []
        for control in (self.step_slider, self.all_steps, self.correct_filter,
                        self.reward_filter, self.search):
            control.observe(self.refresh, names="value")
        self.open_button.on_click(lambda _: self.open_row())
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))
        self.refresh()
        self.children = [
            widgets.HBox([self.step_slider, self.all_steps, self.correct_filter]),
            widgets.HBox([self.reward_filter, self.search]), self.table,
            widgets.HBox([self.prev_button, self.page_label, self.next_button]),
            widgets.HBox([self.picker, self.open_button]), self.inspector]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.rows) / self.page_size))

    def refresh(self, _=None) -> None:
        """Apply the filters and go back to the first page."""
        step = None if self.all_steps.value else self.step_slider.value
        correct = {"all": None, "correct": True, "wrong": False}[self.correct_filter.value]
        self.rows = trace_rows(self.traces, step=step, correct=correct,
                               reward_range=self.reward_filter.value,
                               search=self.search.value or None)
        self.step_slider.disabled = self.all_steps.value
        self.show_page(0)

    def show_page(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped) of the filtered rows."""
        self.page = min(max(0, page), self.pages - 1)
        start = self.page * self.page_size
        self.table.value = traces_html(self.rows, limit=self.page_size, offset=start)
        self.page_label.value = (f"<span class='wb wb-muted'>&nbsp;page {self.page + 1} of "
                                 f"{self.pages}&nbsp;</span>")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1
        page_rows = list(enumerate(self.rows))[start:start + self.page_size]
        self.picker.options = [
            (f"step {r['step']} · group {r['group']} · #{r['index']} · reward "
             f"{r['reward']:.2f}", i) for i, r in page_rows]
        self.picker.value = page_rows[0][0] if page_rows else None

    def open_row(self, row: int | dict | None = None) -> GroupInspector:
        """Show a row's group in the inspector: a row dict, an index into ``.rows``, or the
        row picked in the dropdown."""
        if row is None:
            row = self.picker.value
        if isinstance(row, int):
            row = self.rows[row]
        if row is not None:
            self.inspector.show(row["step"], row["group"])
        return self.inspector

    def snapshot_html(self) -> str:
        return self.table.value + self.inspector.snapshot_html()


class TrainingDashboard:
    """A ``GRPOTrainer`` callback: a progress bar and live plots of reward per component,
    accuracy (sampled, and held-out where the trainer evaluated), completion length, entropy, KL
    and clip fraction, redrawn every ``every`` steps. A health panel that is flat at zero says
    why in place (``FLAT_PANEL_NOTES``).

    In a notebook it displays itself on the first step; elsewhere (scripts, tests) it only keeps
    ``history`` and draws nothing. ``total_steps`` sizes the progress bar.
    """

    def __init__(self, total_steps: int | None = None, *, every: int | None = None,
                 window: int = 10, title: str = "GRPO", display: bool | None = None):
        self.total_steps = total_steps
        self.every = every or max(1, (total_steps or 100) // 15)
        self.window = window
        self.title = title
        self.history: list[dict] = []
        self.show = in_notebook() if display is None else display
        self._box = None
        self._handle = None
        self._t0 = None

    # the callback
    def __call__(self, metrics: dict) -> None:
        self.history.append(dict(metrics))
        if not self.show:
            return
        if self._box is None:
            self._t0 = time.perf_counter()
            self._build()
        step = int(metrics["step"])
        self._progress.value = min(step, self._progress.max)
        self._stats.value = f"<span class='wb'>{_e(self.status_line())}</span>"
        last = self.total_steps is not None and step >= self.total_steps
        if step % self.every == 0 or last or len(self.history) == 1:
            self._redraw()

    def _redraw(self) -> None:
        self._image.value = self.figure_png()
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)

    def on_eval(self, result: dict) -> None:
        """Called by the trainer after a held-out evaluation during training: a red dot on the
        accuracy panel at that step."""
        if self.history and self.history[-1]["step"] == result.get("step"):
            self.history[-1]["heldout_accuracy"] = result["accuracy"]
            if self.show and self._box is not None:
                self._redraw()

    def status_line(self) -> str:
        """One line of text: step, reward, accuracy, length, seconds so far."""
        m = self.history[-1]
        total = f"/{self.total_steps}" if self.total_steps else ""
        spent = (time.perf_counter() - self._t0) if self._t0 else 0.0
        return (f"{self.title} step {m['step']}{total} · reward {_fmt(m.get('reward_mean'))}"
                f" · accuracy {_fmt(m.get('accuracy'))} · length "
                f"{_fmt(m.get('completion_length'), 1)} · {spent:.0f} s")

    def figure_png(self) -> bytes:
        """The six live panels as PNG bytes (matplotlib, no pyplot state touched)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from .plots import moving_average

        s = dashboard_series(self.history)
        fig = Figure(figsize=(14, 2.6), dpi=72)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 6)
        comps = [k for k in s if k.startswith("reward/")]
        dot = "." if len(s["step"]) < 20 else None           # a line needs two points
        axes[0].plot(s["step"], moving_average(s["reward"], self.window), color="black", lw=2,
                     label="total", marker=dot)
        for k in comps:
            axes[0].plot(s["step"], moving_average(s[k], self.window), lw=1.2,
                         label=k.split("/", 1)[1], marker=dot)
        axes[0].legend(fontsize=7, loc="best")
        panels = [("reward", None), ("accuracy", "tab:green"),
                  ("completion_length", "tab:gray"), ("entropy", "tab:blue"),
                  ("kl", "tab:purple"), ("clip_fraction", "tab:orange")]
        titles = {"accuracy": "accuracy (sampled; dots: held-out)",
                  "entropy": "entropy (nats / token)"}
        for ax, (key, color) in zip(axes, panels):
            if key != "reward":
                ax.plot(s["step"], s[key], color=color, lw=0.6, alpha=0.4)
                ax.plot(s["step"], moving_average(s[key], self.window), color=color, lw=1.5,
                        marker=dot)
            ax.set_title(titles.get(key, key.replace("_", " ")), fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if self.total_steps:
                ax.set_xlim(0, self.total_steps)
            values = [v for v in s.get(key, []) if not math.isnan(v)]
            if key in FLAT_PANEL_NOTES and len(values) > 1 and not any(values):
                ax.text(0.5, 0.5, FLAT_PANEL_NOTES[key], transform=ax.transAxes, ha="center",
                        va="center", fontsize=7, color="#555")
        held = [(st, v) for st, v in zip(s["step"], s["heldout_accuracy"]) if not math.isnan(v)]
        if held:
            axes[1].scatter(*zip(*held), color="tab:red", s=14, zorder=3)
        axes[1].set_ylim(-0.02, 1.02)
        if self.history:
            fig.suptitle(self.status_line(), fontsize=9, x=0.01, ha="left")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    def _build(self) -> None:
        from IPython.display import display

        w = widgets
        self._progress = w.IntProgress(value=0, min=0, max=self.total_steps or 1,
                                       description=self.title, bar_style="info",
                                       layout=w.Layout(width="45%"))
        self._stats = w.HTML()
        self._image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self._box = w.VBox([w.HBox([self._progress, self._stats]), self._image])
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict:
        """Display data: the live widget, plus the latest figure as a PNG for viewers that
        cannot run widgets (a saved notebook on GitHub shows the final picture)."""
        import base64

        data = dict(self._box._repr_mimebundle_() or {})
        if self._image.value:
            data["image/png"] = base64.b64encode(self._image.value).decode()
        data["text/plain"] = self.status_line() if self.history else self.title
        return data


# =============================================================================================
# helpers
# =============================================================================================

def _traces_of(run, step: int | None = None) -> list[dict]:
    if isinstance(run, (list, tuple)):
        return list(run)
    from .runs import Run

    if isinstance(run, (str, Path)):
        run = Run.open(run)
    return run.traces(step=step)


def _correct(trace: dict) -> bool | None:
    comps = trace.get("components") or {}
    if comps.get("answer") is not None:
        return comps["answer"] >= 1.0
    verdict = trace.get("verdict")
    if verdict:
        return verdict[-1]["value"].startswith("correct")
    return None


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _prompt_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    from .tasks import completion_text

    users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return "\n".join(str(m.get("content", "")) for m in users) or completion_text(prompt)


