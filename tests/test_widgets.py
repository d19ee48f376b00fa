"""Widgets: the pure row builders on small fixed inputs, and the views built over them headless."""
from __future__ import annotations

import math

import pytest
import torch

from workbench.grpo import group_advantages
from workbench.rewards import score_completions
from workbench.runs import Run
from workbench.tasks import get_task
from workbench.widgets import (GroupInspector, TraceBrowser, TrainingDashboard,
                               VerifierPlayground, batch_traces, dashboard_series, group_html,
                               group_rows, trace_rows, traces_html, verdict_path, verdict_rows)
from verifiers import verify_math

WORKED = "7+3=10\n10+5=15\n15+8=23\n<answer>23</answer>"
GUESS = "<answer>21</answer>"


def _trace(step, group, index, completion, reward, *, answer="23", advantage=0.0,
           prompt="Add: 7+3+5+8", correct=None):
    comps = {"answer": float(correct if correct is not None else reward >= 1), "format": 1.0}
    return {"step": step, "group": group, "index": index, "prompt": prompt,
            "completion": completion, "answer": answer, "components": comps,
            "reward": reward, "advantage": advantage, "length": len(completion) // 2,
            "finished": True}


@pytest.fixture
def traces():
    rows = []
    for step in (1, 2):
        rows += [_trace(step, 0, 0, WORKED, 1.1, advantage=0.87),
                 _trace(step, 0, 1, GUESS, 0.1, advantage=-0.87),
                 _trace(step, 1, 0, "<answer>12</answer>", 0.1, answer="12", correct=False,
                        prompt="Add: 1+2+3+6"),
                 _trace(step, 1, 1, "<answer>13</answer>", 0.1, answer="12", correct=False,
                        prompt="Add: 1+2+3+6")]
    return rows


# --- verdict path -------------------------------------------------------------------------------

def test_verdict_path_walks_extraction_normalisation_gold_decision():
    rows = verdict_path(WORKED, "23")
    assert [r["stage"] for r in rows] == ["extracted", "normalised", "gold", "decision"]
    assert rows[0]["value"] == "23" and "<answer>" in rows[0]["detail"][0]
    assert rows[1]["value"] == "23"
    assert rows[2]["value"] == "23"
    assert rows[3]["value"].startswith("correct")


def test_verdict_rows_keep_every_step_once_in_order():
    for completion, gold in [(WORKED, "23"), (GUESS, "23"), ("no idea", "23"),
                             ("\\boxed{\\frac{2}{4}}", "1/2"), ("x = 0.5", "\\frac12")]:
        v = verify_math(completion, gold)
        rows = verdict_rows(v)
        assert [d for r in rows for d in r["detail"]] == list(v.steps)
        assert rows[-1]["value"].startswith("correct" if v.correct else "wrong")
        assert v.reason in rows[-1]["value"]


def test_verdict_path_of_a_completion_without_answer_stops_early():
    rows = verdict_path("I am not sure.", "23", fallback_last_number=False)
    assert rows[0]["value"] is None and rows[1]["value"] is None
    assert rows[-1]["value"] == "wrong (no_answer)"


# --- groups ---------------------------------------------------------------------------------------

def test_group_rows_pick_one_group_in_order_with_verdicts(traces):
    shuffled = list(reversed(traces))
    rows = group_rows(shuffled, step=2, group=0)
    assert [r["index"] for r in rows] == [0, 1]
    assert [r["completion"] for r in rows] == [WORKED, GUESS]
    assert [r["correct"] for r in rows] == [True, False]
    assert rows[0]["verdict"][0]["value"] == "23" and rows[1]["verdict"][0]["value"] == "21"
    assert not any(r["zero_std"] for r in rows)
    assert group_rows(traces, step=9, group=0) == []


def test_group_rows_flag_zero_std_groups(traces):
    rows = group_rows(traces, step=1, group=1)
    assert all(r["zero_std"] for r in rows)
    assert "zero std" in group_html(rows)


def test_batch_traces_match_the_trainer_shape_and_feed_group_rows():
    task = get_task("sum", n_train=4, n_test=1)
    row = task.train[0]
    gold = row["answer"]
    texts = [f"<answer>{gold}</answer>", "<answer>0</answer>", f"<answer>{gold}</answer>",
             "oops"]
    breakdown = score_completions(task.reward_funcs, [row["prompt"]] * 4, texts,
                                  weights=task.reward_weights, columns={"answer": [gold] * 4})
    adv = group_advantages(breakdown.total, group_size=4)
    traces = batch_traces([row["prompt"]], texts, breakdown, adv, group_size=4,
                          answers=[gold], step=3)
    assert {"step", "group", "index", "prompt", "completion", "answer", "components",
            "reward", "advantage", "length", "finished"} <= set(traces[0])
    assert traces[0]["prompt"] == row["question"]
    assert [t["components"]["answer"] for t in traces] == [1.0, 0.0, 1.0, 0.0]
    assert traces[0]["reward"] == pytest.approx(1.1)
    assert traces[3]["advantage"] < 0 < traces[0]["advantage"]
    rows = group_rows(traces, step=3, group=0)
    assert [r["correct"] for r in rows] == [True, False, True, False]
    with pytest.raises(ValueError):
        batch_traces([row["prompt"]] * 3, texts, breakdown, adv, group_size=4)


# --- trace browser --------------------------------------------------------------------------------

def test_trace_rows_filters(traces):
    assert len(trace_rows(traces)) == 8
    assert {r["step"] for r in trace_rows(traces, step=2)} == {2}
    right = trace_rows(traces, correct=True)
    assert len(right) == 2 and all(r["completion"] == WORKED for r in right)
    assert len(trace_rows(traces, correct=False)) == 6
    assert len(trace_rows(traces, reward_range=(0.5, 2.0))) == 2
    assert len(trace_rows(traces, reward_range=(0.1, 0.1))) == 6        # inclusive
    hits = trace_rows(traces, search="10+5")
    assert len(hits) == 2 and all("10+5" in r["completion"] for r in hits)
    assert len(trace_rows(traces, search="1+2+3")) == 4                 # prompts are searched
    assert trace_rows(traces, step=1, correct=True, search="<ANSWER>23")[0]["index"] == 0
    order = [(r["step"], r["group"], r["index"]) for r in trace_rows(list(reversed(traces)))]
    assert order == sorted(order)


def test_trace_rows_read_a_run_folder(tmp_path, traces):
    run = Run.create(tmp_path / "run", {"steps": 2})
    run.append("traces", traces)
    assert trace_rows(run, step=1) == trace_rows(traces, step=1)
    assert trace_rows(tmp_path / "run", correct=True) == trace_rows(traces, correct=True)


def test_html_is_escaped(traces):
    evil = _trace(1, 5, 0, "<script>alert(1)</script> & <blink>", 0.0, prompt="<img src=x>")
    page = traces_html(trace_rows([evil])) + group_html(group_rows([evil], 1, 5))
    assert "<script" not in page and "<img" not in page and "<blink" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;blink&gt;" in page
    assert "&lt;img src=x&gt;" in page


# --- dashboard ------------------------------------------------------------------------------------

def _metrics(step, **extra):
    m = {"step": step, "reward_mean": 0.1 * step, "reward/answer/mean": 0.1 * step,
         "reward/format/mean": 1.0, "accuracy": 0.1 * step, "completion_length": 10.0 + step,
         "kl": 0.0, "clip_fraction": 0.0, "entropy": 1.0, "zero_std_fraction": 0.25,
         "step_seconds": 0.5}
    m.update(extra)
    return m


def test_dashboard_series_one_value_per_step():
    hist = [_metrics(1), _metrics(2, accuracy=None), _metrics(3)]
    s = dashboard_series(hist)
    assert s["step"] == [1, 2, 3]
    assert s["reward"] == pytest.approx([0.1, 0.2, 0.3])
    assert s["reward/answer"] == pytest.approx([0.1, 0.2, 0.3])
    assert s["reward/format"] == [1.0, 1.0, 1.0]
    assert s["accuracy"][0] == pytest.approx(0.1) and math.isnan(s["accuracy"][1])
    assert s["completion_length"] == [11.0, 12.0, 13.0]
    for key in ("kl", "clip_fraction", "entropy", "zero_std_fraction"):
        assert len(s[key]) == 3
    assert dashboard_series([])["step"] == []


def test_dashboard_is_silent_outside_a_notebook(capsys):
    dash = TrainingDashboard(total_steps=3)
    assert dash.show is False
    for i in (1, 2, 3):
        dash(_metrics(i))
    assert len(dash.history) == 3
    assert capsys.readouterr().out == ""
    png = dash.figure_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


# --- views (built headless: no frontend needed) ---------------------------------------------------

def test_views_build_and_react(traces):
    play = VerifierPlayground(completion=WORKED, gold="23")
    assert play.rows[-1]["value"].startswith("correct")
    play.gold.value = "24"
    assert play.rows[-1]["value"].startswith("wrong")
    assert "24" in play._repr_mimebundle_()["text/html"]

    insp = GroupInspector(traces)
    assert insp.step_picker.value == 2 and len(insp.rows) == 2
    insp.show(1, 1)
    assert [r["completion"] for r in insp.rows] == ["<answer>12</answer>", "<answer>13</answer>"]
    bundle = insp._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "&lt;answer&gt;13&lt;/answer&gt;" in bundle["text/html"]

    browser = TraceBrowser(traces)
    assert {r["step"] for r in browser.rows} == {2}
    browser.all_steps.value = True
    assert len(browser.rows) == 8
    browser.correct_filter.value = "correct"
    assert len(browser.rows) == 2
    browser.correct_filter.value = "all"
    browser.search.value = "13"
    assert [r["completion"] for r in browser.rows] == ["<answer>13</answer>"] * 2
    inspector = browser.open_row(0)
    assert inspector.rows[0]["group"] == 1 and inspector.group_picker.value == 1
    assert "wb-trace" in browser.table.value


def test_views_accept_a_real_batch(tiny_policy):
    from workbench.rollouts import sample_group

    task = get_task("sum", n_train=8, n_test=1)
    rows = task.train.select(range(2))
    comps = sample_group(tiny_policy.model, tiny_policy.tokenizer, list(rows["prompt"]),
                         group_size=4, max_new_tokens=48,
                         generator=torch.Generator().manual_seed(0))
    answers = [a for a in rows["answer"] for _ in range(4)]
    breakdown = score_completions(task.reward_funcs, [p for p in rows["prompt"] for _ in range(4)],
                                  comps.texts, weights=task.reward_weights,
                                  columns={"answer": answers})
    adv = group_advantages(breakdown.total, group_size=4)
    traces = batch_traces(list(rows["prompt"]), comps.texts, breakdown, adv, group_size=4,
                          answers=list(rows["answer"]), lengths=comps.lengths.tolist(),
                          finished=comps.finished.tolist())
    insp = GroupInspector(traces, group=1)
    assert [r["completion"] for r in insp.rows] == comps.texts[4:]
    assert all(r["verdict"][2]["value"] == rows["answer"][1] for r in insp.rows)


def test_dashboard_in_a_notebook_updates_widget_and_static_picture(capsys):
    dash = TrainingDashboard(total_steps=2, display=True)
    dash(_metrics(1))
    first = dash._image.value
    dash(_metrics(2))
    assert dash._progress.value == 2 and dash._image.value != first
    bundle = dash._bundle()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] and "step 2/2" in bundle["text/plain"]
    assert "step 2/2" in dash._stats.value


# --- weak verifiers for notebook 05 (workbench.hacking) -------------------------------------------

def test_weak_verifiers_have_the_holes_notebook_05_teaches():
    from workbench.hacking import first_number_reward, gold_anywhere_reward

    completions = [WORKED, "<answer>23</answer>", GUESS, "<answer>30</answer>",
                   "16+7=23\n<answer>24</answer>", "<answer>-23</answer>", "no number"]
    golds = ["23"] * len(completions)
    assert first_number_reward(None, completions, golds) == [0.0, 1, 1, 0, 0, 0, 0]
    assert first_number_reward(None, completions, golds, tolerance=0) == [0.0, 1, 0, 0, 0, 0, 0]
    assert gold_anywhere_reward(None, completions, golds) == [1.0, 1, 0, 0, 1, 1, 0]
    assert gold_anywhere_reward(None, ["<answer>230</answer>", "2.3"], ["23", "23"]) == [0, 0]
    chat = [[{"role": "assistant", "content": GUESS}]]
    assert first_number_reward(None, chat, ["23"]) == [1.0]


def test_weak_task_pays_the_weak_verifier_and_only_watches_the_real_one():
    from workbench.hacking import first_number_reward, weak_task

    task = get_task("sum", n_train=4, n_test=2)
    weak = weak_task(task, first_number_reward)
    assert weak.component_names == ("weak", "answer", "format")
    assert weak.reward_weights == (1.0, 0.0, 0.1)
    b = score_completions(weak.reward_funcs, [None] * 2, [WORKED, GUESS],
                          weights=weak.reward_weights, columns={"answer": ["23", "23"]})
    assert b.component("weak").tolist() == [0.0, 1.0]
    assert b.component("answer").tolist() == [1.0, 0.0]
    assert b.total.tolist() == pytest.approx([0.1, 1.1])
    assert len(weak.train) == len(task.train) and weak.writer is task.writer


def test_notebook_mode_falls_back_to_tiny_without_a_gpu(capsys):
    from workbench.settings import notebook_mode

    threads = torch.get_num_threads()
    try:
        mode = notebook_mode("Qwen/Qwen2.5-0.5B-Instruct")
        line = capsys.readouterr().out
        if not torch.cuda.is_available():
            assert mode.tiny and "needs a CUDA GPU" in line
            assert mode.train_settings(steps=3).threads == 1 and mode.train_settings().steps
        assert line.count("\n") == 1 and line.startswith("[workbench] mode:")
    finally:
        torch.set_num_threads(threads)


# --- static views, paging and health panels ---------------------------------------------------------

def test_static_views_survive_a_sanitiser(traces):
    """GitHub drops <style>: the snapshot in the display data carries its look inline."""
    from workbench.widgets import inline_styles

    bundle = GroupInspector(traces)._repr_mimebundle_()
    static = bundle["text/html"]
    assert "<style" not in static
    assert "class='wb-card" in static and "border: 1px solid #ccc" in static
    assert "&lt;answer&gt;" in static                          # still escaped
    # hostile text cannot smuggle a style or a tag through the rewrite
    out = inline_styles("<style>x{}</style><div class='wb-flag'>a &lt;b&gt;</div><b style='c'>")
    assert out.startswith("<div class='wb-flag' style='background: #fff3cd")
    assert "<b style='c'>" in out and "<style" not in out


def test_trace_browser_pages_through_every_row():
    rows = [{"step": 1, "group": g, "index": i, "prompt": "p", "completion": f"c{g}-{i}",
             "answer": "1", "components": {"answer": 0.0}, "reward": 0.0, "advantage": 0.0}
            for g in range(5) for i in range(9)]                # 45 completions
    browser = TraceBrowser(rows, page_size=20)
    assert browser.pages == 3 and browser.page == 0
    assert "showing 1–20 of 45" in browser.table.value and browser.prev_button.disabled
    browser.next_button.click()
    assert browser.page == 1 and "showing 21–40 of 45" in browser.table.value
    assert browser.picker.options[0][1] == 20                 # the picker lists this page's rows
    browser.show_page(99)
    assert browser.page == 2 and "showing 41–45 of 45" in browser.table.value
    assert browser.next_button.disabled
    browser.search.value = "c0-"                               # a filter goes back to page 1
    assert browser.page == 0 and "showing 1–9 of 9" in browser.table.value


def test_flat_health_panels_say_why(monkeypatch):
    """KL and clip fraction are exactly 0 under the defaults; the dashboard says why in place,
    and only when the panel really is flat."""
    from matplotlib.axes import Axes

    from workbench import widgets as w

    said = []
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, **kw: said.append(s))
    dash = TrainingDashboard(total_steps=3)
    for i in (1, 2, 3):
        dash(_metrics(i, heldout_accuracy=0.5 if i == 2 else None))
    dash.figure_png()
    assert w.FLAT_PANEL_NOTES["kl"] in said and w.FLAT_PANEL_NOTES["clip_fraction"] in said
    said.clear()
    dash = TrainingDashboard(total_steps=3)
    for i in (1, 2, 3):
        dash(_metrics(i, kl=0.01 * i, clip_fraction=0.02))
    dash.figure_png()
    assert said == []
    assert dashboard_series([_metrics(1, heldout_accuracy=0.61)])["heldout_accuracy"] == [0.61]


def test_dashboard_takes_held_out_points_from_the_trainer():
    dash = TrainingDashboard(total_steps=3)
    dash(_metrics(1))
    dash(_metrics(2))
    dash.on_eval({"label": "step-2", "step": 2, "accuracy": 0.61, "n": 100})
    dash.on_eval({"label": "step-1", "step": 1, "accuracy": 0.9, "n": 100})   # stale: ignored
    s = dashboard_series(dash.history)
    assert math.isnan(s["heldout_accuracy"][0]) and s["heldout_accuracy"][1] == 0.61


def test_control_characters_never_reach_a_view():
    evil = "4\x1b[2J\x1b[31m<b>\r\u202e5\x00"
    row = {"step": 1, "group": 0, "index": 0, "prompt": "p\x1b[0m", "completion": evil,
           "answer": "4", "components": {"answer": 0.0}, "reward": 0.0, "advantage": 0.0,
           "length": 3, "finished": True}
    page = traces_html(trace_rows([row])) + group_html(group_rows([row], 1, 0))
    for ch in ("\x1b", "\r", "\u202e", "\x00"):
        assert ch not in page
    assert "\\x1b[2J" in page and "&lt;b&gt;" in page and "\\u202e" in page
