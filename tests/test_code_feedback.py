"""RLEF: the code task, CodeFeedbackEnv, its rewards, the MBPP loader, the tiny code corpus."""
from __future__ import annotations

import json
import time

import pytest

from workbench.envs.code import (FEEDBACK_CHARS, CodeFeedbackEnv, clean_feedback, load_mbpp_task,
                                 no_code_reward, private_tests_reward, with_decoys,
                                 write_mbpp_sample)
from workbench.tasks import get_task


@pytest.fixture(scope="module")
def code_task():
    return get_task("code", n_train=200)


def _problem(row):
    return tuple(json.loads(row["problem"]))


def test_split_is_fixed_and_held_out_never_trained(code_task):
    again = get_task("code", n_train=50, n_test=10)
    assert len(code_task.test) == 40 and again.test["question"] == code_task.test["question"][:10]
    assert not set(code_task.test["question"]) & set(code_task.train["question"])
    row = code_task.test[0]
    assert row["public_tests"] in row["question"]          # public tests are shown ...
    assert row["private_tests"] not in row["question"]     # ... private ones are not
    assert code_task.component_names == ("answer", "no_code")


def test_worked_solutions_pass_and_estimates_sometimes_do(code_task):
    import random

    rows = list(code_task.test)
    worked = [code_task.writer.solution(_problem(r), "worked") for r in rows]
    assert private_tests_reward(None, worked, [r["private_tests"] for r in rows]) == [1.0] * 40
    rng = random.Random(0)
    direct = [code_task.writer.solution(_problem(r), "direct", rng) for r in rows]
    hits = sum(private_tests_reward(None, direct, [r["private_tests"] for r in rows]))
    assert 0.2 * len(rows) < hits < 0.7 * len(rows)      # ~45%: intercept 0.9 x slope 0.5


def test_episode_ends_on_public_pass_or_after_max_turns(code_task):
    row = code_task.test[0]
    a, b = _problem(row)
    env = CodeFeedbackEnv()
    assert env.reset(row) == row["prompt"]
    wrong = env.step(f"def f(x):\n    return {a}*x+{b + 1}")
    assert not wrong.done and wrong.info["status"] == "failed"
    assert f"expected: {b}" in wrong.feedback and f"got:      {b + 1}" in wrong.feedback
    right = env.step(f"def f(x):\n    return {a}*x+{b}")
    assert right.done and right.info["passed"] and right.feedback is None
    env = CodeFeedbackEnv(max_turns=2)
    env.reset(row)
    assert not env.step("no code here").done
    last = env.step("still none")
    assert last.done and not last.info["has_code"]


def test_copying_public_outputs_does_not_pay(code_task):
    """A lookup table of the public tests passes them (the episode ends) but not the private ones."""
    row = code_task.test[3]
    a, b = _problem(row)
    table = f"def f(x):\n    return {{0: {b}, 1: {a + b}}}[x]"
    env = CodeFeedbackEnv()
    env.reset(row)
    assert env.step(table).info["passed"]
    turns = [[{"role": "model", "text": table, "info": {}}]]
    assert private_tests_reward(None, [table], [row["private_tests"]], turns=turns) == [0.0]


def test_reward_judges_the_last_turn_and_penalises_turns_without_code(code_task):
    row = code_task.test[1]
    gold = row["answer"]
    turns = [[{"role": "model", "text": "hmm", "info": {}},
              {"role": "env", "text": "No Python code found.", "info": {}},
              {"role": "model", "text": gold, "info": {}}],
             [{"role": "model", "text": gold, "info": {}},
              {"role": "env", "text": "...", "info": {}},
              {"role": "model", "text": "def f(x):\n    return 0", "info": {}}]]
    completions = ["hmm\n" + gold, gold + "\ndef f(x):\n    return 0"]
    private = [row["private_tests"]] * 2
    assert private_tests_reward(None, completions, private, turns=turns) == [1.0, 0.0]
    assert no_code_reward(None, completions, turns=turns) == [pytest.approx(-0.1), 0.0]


def test_feedback_is_capped_and_free_of_control_characters():
    text = "a\x1b[31mred\x1b[0m\tb\r\nc\x00\u202e" + "x" * 5000
    out = clean_feedback(text)
    assert len(out) <= FEEDBACK_CHARS and out.endswith("[feedback cut]")
    assert "\x1b" not in out and "\x00" not in out and "\u202e" not in out and "\r" not in out
    assert out.startswith("a[31mred[0m\tb\nc")


def test_random_feedback_describes_another_problem(code_task):
    rows = with_decoys(list(code_task.test)[:3])
    a, b = _problem(rows[0])
    env = CodeFeedbackEnv(random_feedback=True)
    env.reset(rows[0])
    step = env.step(f"def f(x):\n    return {a}*x+{b + 1}")
    decoy_first = rows[0]["decoy_tests"].splitlines()[0]
    assert not step.done and decoy_first.split("==")[1].strip() in step.feedback
    with pytest.raises(ValueError, match="decoy_tests"):
        CodeFeedbackEnv(random_feedback=True).reset(code_task.test[0])


def test_hostile_turns_stay_inside_their_episode(code_task):
    """Hang, flood, escape codes, fork and a parent kill, turn after turn: every turn comes back
    as a bounded verdict with clean, capped feedback, and the neighbour episode is unaffected."""
    row = code_task.test[2]
    hostile = ["def f(x):\n    while True:\n        pass\nf(0)",
               "import sys\nsys.stdout.write('\\x1b[2J\\x07' * 10**7)\ndef f(x):\n    return 0",
               "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef f(x):\n    return 0"]
    env = CodeFeedbackEnv(max_turns=3, timeout_s=1.0)
    env.reset(row)
    statuses = []
    for turn in hostile:
        t0 = time.perf_counter()
        step = env.step(turn)
        assert time.perf_counter() - t0 < 10
        statuses.append(step.info["status"])
        if step.feedback is not None:
            assert len(step.feedback) <= FEEDBACK_CHARS
            assert not any(ord(c) < 32 and c not in "\n\t" for c in step.feedback)
    assert statuses[0] == "timeout" and "passed" not in statuses
    assert step.done                                    # the third turn ends the episode
    neighbour = CodeFeedbackEnv()
    neighbour.reset(row)
    assert neighbour.step(row["answer"]).info["passed"]


def test_mbpp_loader_reads_a_written_file(tmp_path):
    path = write_mbpp_sample(tmp_path / "mbpp.jsonl")
    task = load_mbpp_task(path, test_fraction=0.34)
    rows = list(task.train) + list(task.test)
    assert len(rows) == 3 and len(task.test) == 1
    vowels = next(r for r in rows if "vowels" in r["question"])
    assert vowels["public_tests"] in vowels["question"]
    assert "AEIOU" in vowels["private_tests"] and "AEIOU" not in vowels["question"]
    gold = [f"```python\n{r['answer']}\n```" for r in rows]
    assert private_tests_reward(None, gold, [r["private_tests"] for r in rows]) == [1.0] * 3
    env = task.env()
    env.reset(rows[0])
    assert env.step(gold[0]).done
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "test_list": ["assert True"]}) + "\n")
    with pytest.raises(ValueError, match="none private"):
        load_mbpp_task(bad)


def test_code_corpus_shows_feedback_exactly_as_an_episode_does():
    """Repairs in the tiny model's corpus hold the environment's own feedback, rendered as the
    engine renders it (a user turn after the model's <|im_end|>); held-out problems never appear;
    the default spec's cache key is unchanged by the new fields."""
    import dataclasses
    import hashlib

    from workbench.tiny import FORMAT_VERSION, TinySpec, corpus_examples, render_chat, tiny_spec_for

    spec = dataclasses.replace(tiny_spec_for("code"), corpus_size=300)
    corpus = corpus_examples(spec)
    repairs = [(p, c) for p, c in corpus if len(p) > 1]
    assert 0.3 * len(corpus) < len(repairs) < 0.7 * len(corpus)
    held_out = set(get_task("code", n_train=1).test["question"])
    assert not {p[0]["content"] for p, _ in corpus} & held_out
    # fixes copy the feedback's numbers into the program and pass the test it names (the
    # other may still fail: an intercept fix keeps the slope); the rest guess again
    from verifiers import check_code_many

    fixes = [(p, c) for p, c in repairs if c.startswith("# expected ")]
    assert 0.1 * len(repairs) < len(fixes) < 0.6 * len(repairs)
    named = []
    for chat, completion in fixes:
        lines = [line.strip() for line in chat[-1]["content"].split("\n")]
        want, got = (x.split(":")[1].strip() for x in lines if x.startswith(("expected:", "got:")))
        assert completion.split("\n")[0] == f"# expected {want}, got {got}"
        named.append(next(x for x in lines if x.startswith("First failing test: ")).split(": ")[1])
    verdicts = check_code_many([dict(completion=c, tests=t) for (_, c), t in zip(fixes, named)])
    assert all(v.passed for v in verdicts)
    chat, completion = next((p, c) for p, c in repairs if len(p) == 5)
    public = chat[0]["content"].split("\n", 1)[1]         # the question ends with them
    env = CodeFeedbackEnv()
    env.reset({"prompt": chat[:1], "public_tests": public})
    assert env.step(chat[1]["content"]).feedback == chat[2]["content"]
    text = render_chat(chat, completion)
    assert f"{chat[1]['content']}<|im_end|>\n<|im_start|>user\n{chat[2]['content']}<|im_end|>\n" \
           "<|im_start|>assistant\n" in text
    fields = {k: v for k, v in dataclasses.asdict(TinySpec()).items()
              if k not in ("repair_fraction", "fix_fraction")}
    old_key = hashlib.sha256(json.dumps([FORMAT_VERSION, fields], sort_keys=True)
                             .encode()).hexdigest()[:12]
    assert TinySpec().key() == old_key
    assert tiny_spec_for("code").key() != TinySpec(tasks=("code",)).key()


# ---------------------------------------------------------------------------------------------
# On the tiny code model
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def code_policy():
    from workbench.models import load_policy

    return load_policy(task="code", verbose=False)


def test_tiny_code_model_has_first_attempts_and_repairs(code_policy, code_task):
    """The signal RL needs: some first attempts pass, and some episodes that failed first are
    repaired after feedback; the comparison's numbers are rates that only grow with budget."""
    from workbench.envs.code import compare_feedback

    rows = list(code_task.test)                          # 160 episodes: repairs are rare,
    c = compare_feedback(code_policy.model, code_policy.tokenizer, rows, samples=4, seed=0,
                         modes=("feedback",))          # 40 episodes may show none
    fb = c.by_attempt["feedback"]
    assert c.episodes == 160 and len(fb) == 3
    assert 0.05 < fb[0] < 0.5, fb                       # first attempts: ~1 in 10 right
    assert fb[2] > fb[0], fb                           # feedback repairs some failures
    assert all(x <= y for x, y in zip(fb, fb[1:]))
    assert 1.0 <= c.turns_mean["feedback"] <= 3.0


def test_cli_trains_the_code_task(code_policy, tmp_path):
    """`train --task code`: episodes of up to --max-turns turns, judged on private tests, with
    whole episodes in the traces."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "workbench", "train", "--task", "code", "--out", str(out),
         "--steps", "2", "--group-size", "2", "--prompts-per-step", "2", "--eval-examples", "4",
         "--max-turns", "2", "--threads", "1"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "code" and 0 <= summary["accuracy_before"] <= 1
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 2 * 2 * 2
    for t in traces:
        models = [x for x in t["turns"] if x["role"] == "model"]
        assert 1 <= len(models) <= 2 and "status" in models[0]["info"]
        assert set(t["components"]) == {"answer", "no_code"}


def test_tiny_code_model_can_copy_feedback_into_a_repair(code_policy, code_task):
    """The planted skill RL amplifies, on held-out problems: made to start a repair
    (``# expected``) after a wrong attempt and its real feedback, the greedy model copies the
    feedback's numbers and passes the public tests some of the time -- not never (nothing to
    amplify), not always (nothing left for RL)."""
    import random

    from verifiers import check_code_many

    model, tok = code_policy.model, code_policy.tokenizer
    rng, outs = random.Random(0), []
    rows = list(code_task.test)
    for row in rows:
        a, b = _problem(row)
        first = (a % 9 + 1, b) if rng.random() < 0.5 else (a, b + 1)   # slope or intercept off
        env = CodeFeedbackEnv()
        chat = list(env.reset(row))
        attempt = code_task.writer.program(*first)
        chat += [{"role": "assistant", "content": attempt},
                 {"role": "user", "content": env.step(attempt).feedback}]
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tok(text + "# expected", return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=30, do_sample=False)
        outs.append("# expected" + tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    verdicts = check_code_many([dict(completion=o, tests=r["public_tests"])
                                for o, r in zip(outs, rows)])
    passed = sum(v.passed for v in verdicts)
    assert 0.1 * len(rows) <= passed <= 0.9 * len(rows), (passed, outs[:4])


def test_code_model_is_rebuilt_when_its_repairs_are_written_differently(monkeypatch):
    """The cache key follows the code that writes the corpus's repairs, as it follows the
    feedback's wording: a model that learned another repair is never reused."""
    from workbench.tasks import CodeTask
    from workbench.tiny import TinySpec, tiny_spec_for

    before, plain = tiny_spec_for("code").key(), TinySpec().key()

    def repair(self, p, attempt, feedback, rng, *, fix):         # another way to repair
        return attempt, self.program(*attempt)

    monkeypatch.setattr(CodeTask, "repair", repair)
    assert tiny_spec_for("code").key() != before
    assert TinySpec().key() == plain                   # models without repairs: unchanged
