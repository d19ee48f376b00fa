"""SFT: the loss sees completion tokens only, teacher traces pass the verifier, a traces file
is read or refused in one line, and a run killed with SIGKILL resumes number for number."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.__main__ import main
from workbench.runs import Run
from workbench.sft import encode_traces, load_traces, sft_loss, teacher_traces
from workbench.tasks import TaskFileError, get_task

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"prompt": [{"role": "user", "content": "Add: 1+2+3"}],
         "completion": "1+2=3\n3+3=6\n<answer>6</answer>"},
        {"prompt": "Add: 9+9", "completion": "<answer>18</answer>"}]


def test_labels_are_the_completion_and_its_end_token_only(tiny_policy):
    tok = tiny_policy.tokenizer
    batch = encode_traces(tok, ROWS)
    for i, row in enumerate(ROWS):
        real = batch.attention_mask[i].bool()
        kept = batch.labels[i][batch.labels[i] != -100]
        assert tok.decode(kept) == row["completion"] + tok.eos_token
        # everything before the completion is context: the prompt exactly as sampling sees it
        n_prompt = int(real.sum()) - len(kept)
        from workbench.rollouts import render_prompt

        assert tok.decode(batch.input_ids[i, :n_prompt]) == render_prompt(tok, row["prompt"])
        assert (batch.labels[i][~real] == -100).all()        # padding is never a target


def test_loss_is_the_mean_over_completion_tokens_and_ignores_the_prompt(tiny_policy):
    model, tok = tiny_policy.model, tiny_policy.tokenizer
    batch = encode_traces(tok, ROWS)
    with torch.no_grad():
        got = float(sft_loss(model, batch))
        # by hand, one row at a time with no padding: -log p of each completion token
        nll, count = 0.0, 0
        for i in range(len(ROWS)):
            n = int(batch.attention_mask[i].sum())
            ids, lab = batch.input_ids[i:i + 1, :n], batch.labels[i, :n]
            logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            for t in range(1, n):
                if lab[t] != -100:
                    nll -= float(logps[t - 1, lab[t]])
                    count += 1
    assert count == batch.completion_tokens
    assert got == pytest.approx(nll / count, rel=1e-5)


def test_teacher_traces_are_worked_training_solutions_the_verifier_accepts():
    task = get_task("sum", n_train=50, n_test=10)
    traces = teacher_traces(task)
    assert len(traces) == 50                                   # a solver is always right
    assert [t["prompt"] for t in traces] == task.train["prompt"]
    assert all("\n" in t["completion"] and t["completion"].endswith(
        f"<answer>{t['answer']}</answer>") for t in traces)
    # a teacher that lies is filtered by the same verifier that pays the RL reward
    class Liar:
        def __getattr__(self, name):
            return getattr(task.writer, name)

        def solution(self, p, style="worked"):
            return "<answer>-1</answer>" if p[0] % 2 else task.writer.solution(p, style)

    from dataclasses import replace

    kept = teacher_traces(replace(task, writer=Liar()))
    odd = sum(json.loads(p)[0] % 2 for p in task.train["problem"])
    assert len(kept) == 50 - odd and 0 < odd < 50


def test_a_traces_file_is_read_and_bad_rows_are_named(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    assert load_traces(good) == ROWS
    for text, words in [('{"prompt": "x"}', "needs 'prompt' and 'completion'"),
                        ('{"prompt": "", "completion": "y"}', "'prompt' must be"),
                        ('{"prompt": [{"role": 1}], "completion": "y"}', "'prompt' must be"),
                        ('{"prompt": "x", "completion": 3}', "'completion' must be"),
                        ('[1, 2]', "must be a JSON object"), ("{oops", "not valid JSON")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps(ROWS[1]) + "\n" + text + "\n")
        with pytest.raises(TaskFileError, match=words) as err:
            load_traces(bad)
        assert f"{bad}:2" in str(err.value) and "\n" not in str(err.value)


def test_sft_trains_on_a_users_traces_file(tiny_policy, tmp_path):
    from dataclasses import replace

    from workbench.settings import SFTSettings
    from workbench.sft import SFTTrainer

    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS * 3))         # 6 rows
    s = SFTSettings(threads=1, eval_examples=2)
    s = replace(s, sft=replace(s.sft, traces=str(path), max_traces=4, batch_size=3))
    state = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    try:
        trainer = SFTTrainer(s, None, policy=tiny_policy, verbose=False)
        assert trainer.pool == ROWS * 2                                  # the first 4 rows
        losses = [trainer.step()["loss"] for _ in range(4)]              # 3 epochs of 4
        assert trainer.seen_traces() == trainer.pool and trainer.data_position == 12
        assert losses[-1] < losses[0], losses                            # it learns them
    finally:
        tiny_policy.model.load_state_dict(state)          # the session fixture stays pristine


@pytest.mark.parametrize("flags,words", [
    (["--traces", "/no/such.jsonl"], "no such file"),
    (["--batch-size", "0"], "batch_size=0"),
    (["--task", "gsm8k:/no/such.jsonl"], "no teacher of its own"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, flags, words):
    assert main(["sft", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "r" / "settings.json").exists()


def test_cli_refuses_a_bad_traces_file_and_a_grpo_folder(capsys, tmp_path, tiny_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    assert main(["sft", "--out", str(tmp_path / "r"), "--traces", str(bad),
                 "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1" in err and err.count("\n") == 1
    grpo = tmp_path / "grpo"
    grpo.mkdir()
    (grpo / "settings.json").write_text(json.dumps({"grpo": {}}))
    assert main(["sft", "--resume", str(grpo)]) == 2
    assert "is a GRPO run: resume it with `python -m workbench train" in capsys.readouterr().err
    sft = tmp_path / "sft"                              # and the other way round
    sft.mkdir()
    (sft / "settings.json").write_text(json.dumps({"sft": {}}))
    assert main(["train", "--resume", str(sft)]) == 2
    err = capsys.readouterr().err
    assert "is an SFT run: resume it with `python -m workbench sft" in err
    assert "Traceback" not in err


def _sft_cmd(out):
    return [sys.executable, "-m", "workbench", "sft", "--steps", "12", "--checkpoint-every", "4",
            "--batch-size", "8", "--eval-examples", "10", "--threads", "1", "--out", str(out)]


@pytest.mark.slow
def test_sigkill_then_resume_is_the_same_run(tiny_path, tmp_path, capsys, start_then_sigkill):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ref = tmp_path / "ref"
    subprocess.run(_sft_cmd(ref), check=True, env=env, cwd=ROOT, capture_output=True)
    victim = tmp_path / "victim"                         # killed between checkpoints 4 and 8
    killed_at = start_then_sigkill(_sft_cmd(victim), victim, after_lines=6,
                                   log=tmp_path / "victim.log")
    assert 6 <= killed_at < 12, (tmp_path / "victim.log").read_text()[-3000:]
    done = subprocess.run([sys.executable, "-m", "workbench", "sft", "--resume", str(victim)],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    got, want = Run.open(victim).metrics(), Run.open(ref).metrics()
    assert [m["step"] for m in got] == list(range(1, 13))
    assert [m["loss"] for m in got] == [m["loss"] for m in want]       # number for number
    assert [m["data_position"] for m in got] == [m["data_position"] for m in want]
    assert [e["accuracy"] for e in Run.open(victim).evals()] == \
        [e["accuracy"] for e in Run.open(ref).evals()]
    assert json.loads((victim / "summary.json").read_text())["steps"] == 12
    assert main(["inspect", str(victim)]) == 0                # inspect reads an SFT run too
    text = capsys.readouterr().out
    assert "steps: 12/12" in text and "completion loss" in text and "finished" in text


# ---------------------------------------------------------------------------------------------
# pass@k
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_brute_force_over_every_subset(n):
    from fractions import Fraction
    from itertools import combinations
    from math import comb

    from workbench.evals import pass_at_k

    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(samples, k))
            brute = Fraction(sum(any(s) for s in subsets), len(subsets))
            assert pass_at_k(n, c, k) == pytest.approx(float(brute), abs=1e-12)
            assert brute == 1 - Fraction(comb(n - c, k), comb(n, k))


def test_pass_at_k_stays_finite_where_binomials_overflow_floats():
    from math import comb

    from workbench.evals import pass_at_k

    with pytest.raises(OverflowError):
        float(comb(2048, 1024))                                # ~1e615: no float holds it
    got = pass_at_k(2048, 3, 1024)
    exact = 1 - comb(2045, 1024) / comb(2048, 1024)          # Python ints: exact, then a float
    assert got == pytest.approx(exact, rel=1e-9)
    assert pass_at_k(1024, 0, 256) == 0.0 and pass_at_k(1024, 1024, 1) == 1.0
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)


def test_sampled_pass_at_k_counts_and_rises_with_k(tiny_policy):
    from workbench.evals import pass_at_k, sample_pass_at_k

    task = get_task("sum", n_train=10, n_test=6)
    a = sample_pass_at_k(tiny_policy, task, n=8, problems=6, seed=1, label="base")
    assert a.ks == (1, 2, 4, 8) and len(a.correct) == 6 and all(0 <= c <= 8 for c in a.correct)
    assert list(a.values) == sorted(a.values)                  # more tries never hurt
    assert a.at(1) == pytest.approx(sum(a.correct) / 48)       # pass@1 = sampled accuracy
    assert a.at(8) == pytest.approx(sum(c > 0 for c in a.correct) / 6)
    assert a.at(4) == pytest.approx(sum(pass_at_k(8, c, 4) for c in a.correct) / 6)
    assert sample_pass_at_k(tiny_policy, task, n=8, problems=6, seed=1).correct == a.correct


# ---------------------------------------------------------------------------------------------
# the three arms on one budget
# ---------------------------------------------------------------------------------------------

def test_arms_share_one_token_budget_and_report_the_teacher_apart(tiny_path):
    from workbench.distill import ArmsSettings, arms_table, compare_arms

    a = ArmsSettings(budget_tokens=1500, few_traces=8, few_steps=2, eval_examples=8,
                     pass_n=4, pass_problems=3)
    results = compare_arms(a, seeds=(3,), verbose=False)
    assert [r.arm for r in results] == ["base", "rl", "sft", "sft_rl"]
    base, rl, sft, sft_rl = results
    assert base.budget_tokens == 0 and base.steps == {}
    one_rl_step = a.grpo.grpo.group_size * a.grpo.grpo.prompts_per_step * \
        a.grpo.grpo.max_new_tokens * 2
    for r in (rl, sft, sft_rl):                         # stops at the first step past the budget
        assert a.budget_tokens <= r.budget_tokens < a.budget_tokens + one_rl_step, r
        assert r.seed == 3 and 0 <= r.accuracy <= 1 and r.pass_at_k.ks == (1, 2, 4)
    assert rl.generated_tokens == rl.trained_tokens and rl.teacher_tokens == 0   # 1 pass
    assert sft.generated_tokens == 0 and sft.teacher_tokens > 0
    assert sft_rl.steps["sft"] == 2 and sft_rl.steps["rl"] >= 1
    # the few-trace arm's teacher wrote at most its 8 traces; the SFT arm's many more
    assert 0 < sft_rl.teacher_tokens < sft.teacher_tokens
    assert len(arms_table(results)) == 4


def test_the_ood_split_has_one_more_term_than_training():
    from dataclasses import replace

    from workbench.distill import ArmsSettings, ood_task
    from workbench.settings import SettingsError, TaskSettings

    a = ArmsSettings(eval_examples=5, pass_problems=3)
    assert ood_task(a).knobs["n_terms"] == 4
    harder = replace(a, grpo=replace(a.grpo, task=TaskSettings(knobs={"n_terms": 6})))
    assert ood_task(harder).knobs["n_terms"] == 7
    assert ood_task(replace(a, ood_knobs={"max_operand": 19})).knobs == \
        {"n_terms": 3, "max_operand": 19}
    with pytest.raises(SettingsError, match="ood_knobs"):
        ood_task(replace(a, grpo=replace(a.grpo, task=TaskSettings(name="linear"))))
