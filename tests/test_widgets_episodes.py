"""The episode viewer: pure rows on fixed records, and the view built over them headless."""
from __future__ import annotations

from workbench.widgets_episodes import EpisodeViewer, episode_html, episode_rows, verdict_of

EPISODE = {
    "step": 3, "group": 0, "index": 1, "prompt": "Write f(x) = 2*x + 1",
    "completion": "def f(x): return x\ndef f(x): return 2*x+1",
    "turns": [
        {"role": "model", "text": "def f(x): return x", "info": {"verdict": "1/3 tests"}},
        {"role": "env", "text": "f(2): expected 5, got 2 <tb>", "info": {}},
        {"role": "model", "text": "def f(x): return 2*x+1", "info": {"passed": 3, "total": 3}},
    ],
    "ended": "done", "components": {"answer": 1.0, "no_code": 0.0}, "reward": 1.0,
}


def test_rows_follow_the_episode_turn_by_turn():
    rows = episode_rows(EPISODE)
    assert [r["who"] for r in rows] == ["prompt", "model", "env", "model", "end"]
    assert [r["turn"] for r in rows] == [0, 1, 1, 2, 2]
    assert rows[1]["verdict"] == "1/3 tests" and rows[2]["verdict"] is None
    assert rows[3]["verdict"] == "passed=3, total=3"
    end = rows[-1]
    assert end["ended"] == "done" and end["reward"] == 1.0 and end["components"]["answer"] == 1.0


def test_a_single_turn_record_is_its_one_model_turn():
    rows = episode_rows({"step": 1, "prompt": "Add: 1+2", "completion": "<answer>3</answer>",
                         "reward": 1.1, "finished": False})
    assert [r["who"] for r in rows] == ["prompt", "model", "end"]
    assert rows[1]["text"] == "<answer>3</answer>" and rows[-1]["ended"] == "length"
    assert verdict_of({}) is None


def test_html_sets_model_and_environment_apart_and_escapes():
    html = episode_html(episode_rows(EPISODE))
    assert html.count("wb-turn wb-model") == 2 and html.count("wb-turn wb-env") == 1
    assert "MODEL · turn 2" in html and "ENVIRONMENT" in html
    assert "&lt;tb&gt;" in html and "<tb>" not in html
    assert "ended:</b> done after 2 model turns" in html


def test_viewer_switches_step_and_episode():
    other = dict(EPISODE, step=4, index=0, turns=EPISODE["turns"][:1], ended="max_turns")
    view = EpisodeViewer([EPISODE, other])
    assert view.step_picker.value == 4 and view.rows[-1]["ended"] == "max_turns"
    view.show(3, 0)
    assert [r["who"] for r in view.rows][1:4] == ["model", "env", "model"]
    assert "wb-env" in view.snapshot_html()
    view.show(3, 9)                                       # past the end: the last one
    assert view.episode_picker.value == 0
