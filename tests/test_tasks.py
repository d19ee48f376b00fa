"""Tasks: fixed held-out splits, gold answers the verifier accepts, TRL-shaped rewards, loaders."""
from __future__ import annotations

import inspect
import json
import random

import pytest

from workbench.tasks import (TASKS, answer_reward, get_task, gsm8k_gold, last_boxed,
                             load_jsonl_task)

MATH_TASKS = sorted(set(TASKS) - {"code", "search"})   # their own: test_code_feedback.py,
#                                                         test_search.py


@pytest.mark.parametrize("name", MATH_TASKS)
def test_splits_are_fixed_and_disjoint(name):
    a, b = get_task(name, n_train=300, n_test=50), get_task(name, n_train=300, n_test=50)
    assert {"prompt", "answer"} <= set(a.train.column_names)
    assert a.test["question"] == b.test["question"], "held-out set must not depend on anything"
    assert not set(a.test["question"]) & set(a.train["question"])
    assert a.component_names == ("answer", "format")


@pytest.mark.parametrize("name", MATH_TASKS)
def test_worked_solutions_are_verified_correct(name):
    task = get_task(name, n_train=50, n_test=50)
    rows = list(task.test)
    problems = [tuple(json.loads(r["problem"])) for r in rows]
    worked = [task.writer.solution(p, "worked") for p in problems]
    assert answer_reward(None, worked, [r["answer"] for r in rows]) == [1.0] * len(rows)
    fmt = task.reward_funcs[1](prompts=None, completions=worked)
    assert fmt == [1.0] * len(rows)


def test_direct_answers_are_estimates_that_are_seldom_exact():
    task = get_task("sum", n_train=10, n_test=200)
    rng = random.Random(0)
    rows = list(task.test)
    direct = [task.writer.solution(tuple(json.loads(r["problem"])), "direct", rng) for r in rows]
    hits = sum(answer_reward(None, direct, [r["answer"] for r in rows]))
    assert 0 < hits < 0.25 * len(rows)


def test_difficulty_knobs_change_the_problems():
    easy = get_task("sum", n_terms=2, max_operand=3, n_train=20, n_test=5)
    hard = get_task("sum", n_terms=6, n_train=20, n_test=5)
    assert all(q.count("+") == 1 for q in easy.test["question"])
    assert all(q.count("+") == 5 for q in hard.test["question"])
    with pytest.raises(ValueError, match="n_terms"):
        get_task("sum", n_terms=1)


def test_linear_answers_are_fractions():
    task = get_task("linear", n_train=10, n_test=100)
    assert any("/" in a for a in task.test["answer"])


def test_reward_functions_follow_the_trl_contract():
    task = get_task("sum", n_train=10, n_test=4)
    for fn in task.reward_funcs:
        params = inspect.signature(fn).parameters
        assert list(params)[:2] == ["prompts", "completions"]
        assert any(p.kind is p.VAR_KEYWORD for p in params.values())
    chat = [[{"role": "assistant", "content": "<answer>7</answer>"}],
            [{"role": "assistant", "content": "<answer>8</answer>"}]]
    scores = task.reward_funcs[0](prompts=[None, None], completions=chat, answer=["7", "7"],
                                  question=["q", "q"])
    assert scores == [1.0, 0.0]


def test_trl_accepts_the_reward_functions():
    trl = pytest.importorskip("trl")
    from trl.trainer.grpo_trainer import GRPOTrainer

    task = get_task("sum", n_train=10, n_test=4)
    assert all(callable(f) for f in task.reward_funcs)
    assert GRPOTrainer is not None and trl.__version__


def test_unknown_task_and_missing_path():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("chess")
    with pytest.raises(ValueError, match="path="):
        get_task("gsm8k")


def test_gsm8k_loader(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    rows = [{"question": f"Tom has {i} apples and buys 1,000 more. How many?",
             "answer": f"He has {i}+1000 = <<{i}+1000={i + 1000}>>{i + 1000}.\n#### {i + 1000:,}"}
            for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = get_task(f"gsm8k:{path}")
    assert len(task.train) + len(task.test) == 20 and len(task.test) == 2
    assert task.test[0]["prompt"][0]["role"] == "system"
    gold = task.train[0]["answer"]
    assert "," not in gold and int(gold) >= 1000
    good = [f"so the answer is \\boxed{{{gold}}}"]
    assert task.reward_funcs[0](prompts=[None], completions=good, answer=[gold]) == [1.0]
    assert gsm8k_gold("blah\n#### 1,234") == "1234"


def test_math_loader_reads_boxed_solutions(tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [{"problem": "What is $\\frac{1}{2}+\\frac{1}{3}$?",
             "solution": "Common denominator: $\\boxed{\\frac{5}{6}}$.", "level": "Level 1",
             "type": "Prealgebra"},
            {"problem": "Solve $x^2=4$ for $x>0$.", "answer": "2"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = load_jsonl_task("math", path, test_path=path)
    assert task.test["answer"] == ["\\frac{5}{6}", "2"]
    ok = task.reward_funcs[0](prompts=[None, None],
                              completions=["\\boxed{5/6}", "x = \\boxed{2}"],
                              answer=task.test["answer"])
    assert ok == [1.0, 1.0]


@pytest.mark.parametrize("bad, words", [
    ('{"question": "q"}', "needs 'question' and 'answer'"),
    ("not json", "not valid JSON"),
    ('{"question": "q", "answer": "no hashes"}', "no '####'"),
])
def test_bad_files_say_what_is_wrong(tmp_path, bad, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(bad + "\n")
    with pytest.raises(ValueError, match=words):
        get_task("gsm8k", path=str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset file"):
        get_task("math", path=str(tmp_path / "none.jsonl"))


def test_last_boxed_handles_nesting():
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None
