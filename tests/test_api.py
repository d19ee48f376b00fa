"""The obvious call is the right one: `import workbench` exports what a script needs, rewards
take a task, distinct prompts and TRL-style column keywords, and a shadowing install is named."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import workbench
from workbench.rewards import score_completions
from workbench.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
WORKED = "7+3=10\n10+5=15\n<answer>15</answer>"
BARE = "<answer>15</answer>"
WRONG = "15"


def test_top_level_names_resolve():
    for name in workbench.__all__:
        assert getattr(workbench, name) is not None, name
    with pytest.raises(AttributeError):
        workbench.no_such_name


def test_task_weights_are_the_default():
    task = get_task("sum", n_train=20, n_test=5)
    assert task.reward_weights != (1.0,) * len(task.reward_funcs)     # else the test says nothing
    by_task = score_completions(task, ["p"] * 3, [WORKED, BARE, WRONG], answer=["15"] * 3)
    by_list = score_completions(task.reward_funcs, ["p"] * 3, [WORKED, BARE, WRONG],
                                weights=task.reward_weights, columns={"answer": ["15"] * 3})
    assert by_task.weights == task.reward_weights
    assert torch.equal(by_task.total, by_list.total)
    assert torch.equal(torch.nan_to_num(by_task.components), torch.nan_to_num(by_list.components))


def test_distinct_prompts_and_columns_are_repeated_per_sibling():
    task = get_task("sum", n_train=20, n_test=5)
    texts = [WORKED, WRONG, "<answer>9</answer>", "<answer>4</answer>"]
    short = score_completions(task, ["a", "b"], texts, answer=["15", "4"])
    long = score_completions(task, ["a", "a", "b", "b"], texts, answer=["15", "15", "4", "4"])
    assert torch.equal(short.total, long.total)
    assert short.component("answer").tolist() == [1.0, 1.0, 0.0, 1.0]


def test_mismatched_lengths_say_what_to_give():
    task = get_task("sum", n_train=20, n_test=5)
    with pytest.raises(ValueError, match="prompts for"):
        score_completions(task, ["a", "b", "c"], [WORKED] * 4, answer=["15"] * 4)
    with pytest.raises(ValueError, match="column 'answer'"):
        score_completions(task, ["a"] * 4, [WORKED] * 4, answer=["15"] * 3)


def test_a_shadowing_verifiers_package_is_named(tmp_path):
    fake = tmp_path / "site" / "verifiers"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", "import workbench"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "another package" in last and "pip uninstall verifiers" in last


def test_colab_restart_check_sees_a_replaced_module(monkeypatch):
    from workbench import colab

    assert colab.stale_modules(["torch"]) == []
    monkeypatch.setitem(sys.modules, "sympy", types.SimpleNamespace(__version__="0.0.1"))
    stale = colab.stale_modules(["sympy"])
    assert stale and stale[0].startswith("sympy 0.0.1 ->")
