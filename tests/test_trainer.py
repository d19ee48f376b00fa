"""Training on the tiny model: weights move, reward rises, runs resume after SIGKILL exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from workbench.runs import Run
from workbench.settings import TrainSettings
from workbench.trainer import GRPOTrainer

ROOT = Path(__file__).resolve().parents[1]


def _small(**top):
    s = TrainSettings()
    return replace(s, eval_examples=40, checkpoint_every=5, **top)


@pytest.mark.slow
def test_grpo_moves_weights_and_raises_reward(tiny_path, tmp_path):
    s = _small(steps=40)
    trainer = GRPOTrainer(s, tmp_path / "run", verbose=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.train(progress=False)
    moved = sum(float((v - before[k]).abs().sum()) for k, v in trainer.model.state_dict().items())
    assert moved > 0
    metrics = Run.open(tmp_path / "run").metrics()
    assert [m["step"] for m in metrics] == list(range(1, 41))
    first = sum(m["reward_mean"] for m in metrics[:8]) / 8
    last = sum(m["reward_mean"] for m in metrics[-8:]) / 8
    assert last > first + 0.1, (first, last)
    assert summary["accuracy_after"] > summary["accuracy_before"] + 0.15, summary
    # the run folder holds everything the widgets read
    traces = Run.open(tmp_path / "run").traces(step=40)
    assert len(traces) == s.grpo.group_size * s.grpo.prompts_per_step
    assert {"prompt", "completion", "components", "reward", "advantage"} <= set(traces[0])
    assert (tmp_path / "run" / "rewards.png").stat().st_size > 10_000
    for key in ("generation_seconds", "training_seconds", "tokens_per_second", "entropy",
                "clip_fraction", "kl", "zero_std_fraction", "reward/answer/mean"):
        assert key in metrics[-1]


def test_step_records_every_metric_the_issue_names(tiny_policy):
    s = _small(steps=1)
    s = replace(s, grpo=replace(s.grpo, num_iterations=2, beta=0.05, prompts_per_step=2,
                                micro_batch_size=8))
    trainer = GRPOTrainer(s, None, policy=tiny_policy, verbose=False)
    state = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    try:
        m = trainer.step()
    finally:
        tiny_policy.model.load_state_dict(state)          # the session fixture stays pristine
    assert m["kl"] > 0, "second pass moved the policy away from the reference"
    assert 0 <= m["clip_fraction"] <= 1 and m["entropy"] > 0
    assert m["reward_std"] >= 0 and m["completion_length"] > 0


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "workbench", "train", "--steps", "12", "--checkpoint-every", "4",
            "--eval-examples", "20", "--threads", "1", *extra, "--out", str(out)]


@pytest.mark.slow
def test_sigkill_then_resume_loses_and_duplicates_nothing(tiny_path, tmp_path,
                                                         start_then_sigkill):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(ref), check=True, env=env, cwd=ROOT, capture_output=True)
    victim = tmp_path / "victim"                         # killed between checkpoints 4 and 8
    killed_at = start_then_sigkill(_train_cmd(victim), victim, after_lines=6,
                                   log=tmp_path / "victim.log")
    assert 6 <= killed_at < 12, (tmp_path / "victim.log").read_text()[-3000:]
    # two resumes at once: one continues the run, the other is refused by the lock
    both = [subprocess.Popen([sys.executable, "-m", "workbench", "train", "--resume", str(victim)],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = sorted(((p.communicate()[1], p.returncode)[::-1] for p in both),
                     key=lambda r: r[0])
    assert results[0][0] == 0, results[0][1][-2000:]
    assert results[1][0] == 2 and "being written by process" in results[1][1], results[1][1][-2000:]
    assert "Traceback" not in results[1][1]
    got, want = Run.open(victim).metrics(), Run.open(ref).metrics()
    assert [m["step"] for m in got] == list(range(1, 13))
    assert len(Run.open(victim).traces()) == len(Run.open(ref).traces())
    # restored weights, optimiser, RNG and data position: the same run, number for number
    assert [m["reward_mean"] for m in got] == [m["reward_mean"] for m in want]
    assert [t["completion"] for t in Run.open(victim).traces()] == \
        [t["completion"] for t in Run.open(ref).traces()]
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["steps"] == 12


def _quick(**top):
    s = TrainSettings()
    return replace(s, eval_examples=4, checkpoint_every=4, threads=1, **top,
                   grpo=replace(s.grpo, group_size=4, prompts_per_step=2, micro_batch_size=8,
                                generation_batch_size=8))


def test_resume_extends_and_falls_back_past_a_damaged_checkpoint_exactly(tiny_path, tmp_path,
                                                                         capsys):
    """A 4-step run resumed with steps=8, and an 8-step run whose newest checkpoint no longer
    loads (latest.json garbage too), both end with the numbers of one straight 8-step run."""
    from workbench.trainer import train

    ref = tmp_path / "ref"
    train(_quick(steps=8), ref, verbose=False)
    want = [m["reward_mean"] for m in Run.open(ref).metrics()]
    assert len(want) == 8
    # more steps: the one override a user expects to work, recorded in settings.json
    ext = tmp_path / "ext"
    train(_quick(steps=4), ext, verbose=False)
    summary = train(None, ext, resume=True, steps=8, verbose=False)
    assert summary["steps"] == 8 and Run.open(ext).settings["steps"] == 8
    assert [m["reward_mean"] for m in Run.open(ext).metrics()] == want
    assert len(Run.open(ext).traces()) == 8 * 8
    # newest checkpoint damaged where its size cannot tell (same length, garbage bytes)
    state = ref / "checkpoints" / "step-000008" / "trainer_state.pt"
    state.write_bytes(b"\0" * state.stat().st_size)
    (ref / "checkpoints" / "latest.json").write_text("{")
    summary = train(None, ref, resume=True, verbose=True)
    out = capsys.readouterr().out
    assert "step-000008 does not load" in out and "resumed" in out and "from step 4" in out
    assert summary["steps"] == 8
    assert [m["reward_mean"] for m in Run.open(ref).metrics()] == want, "redone steps 5-8 match"
    assert [e["label"] for e in Run.open(ref).evals()] == ["before", "after"]
    assert Run.open(ref).latest_checkpoint().name == "step-000008"
    assert json.loads((ref / "checkpoints" / "latest.json").read_text())["step"] == 8


def test_a_resume_while_another_process_writes_is_refused_before_loading(tmp_path):
    from test_runs import fake_run, held_by_another_process

    from workbench.runs import RunStoreError

    run = fake_run(tmp_path / "r", settings=_quick(steps=8).to_dict())
    run.close()
    with held_by_another_process(run.path) as pid:
        t0 = time.perf_counter()
        with pytest.raises(RunStoreError, match=f"process {pid}"):
            GRPOTrainer(None, run.path, resume=True, verbose=False)
        assert time.perf_counter() - t0 < 5, "refused before the model loads"


def test_cli_inspect_and_errors(tmp_path):
    env = dict(os.environ)
    bad = subprocess.run([sys.executable, "-m", "workbench", "train", "--out", str(tmp_path / "x"),
                          "--group-size", "1"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "at least 2" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "workbench", "inspect", str(tmp_path)],
                             env=env, cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode != 0
    model = subprocess.run([sys.executable, "-m", "workbench", "train", "--out", str(tmp_path / "y"),
                            "--model", str(tmp_path / "no-model")], env=env, cwd=ROOT,
                           capture_output=True, text=True)
    assert model.returncode == 2 and "no such model folder" in model.stderr


@pytest.mark.slow
def test_cli_eval_reads_a_checkpoint(tiny_path, tmp_path):
    """`python -m workbench eval --model CHECKPOINT/weights` loads what train saved."""
    env = dict(os.environ)
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "workbench", "train", "--out", str(run), "--steps", "2",
                    "--eval-examples", "5", "--threads", "1"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    weights = run / "checkpoints" / "step-000002" / "weights"
    res = subprocess.run([sys.executable, "-m", "workbench", "eval", "--model", str(weights),
                          "--examples", "5", "--threads", "1"], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    result = next(line for line in res.stdout.splitlines() if line.startswith("{"))
    assert json.loads(result)["n"] == 5 and 0 <= json.loads(result)["accuracy"] <= 1


# ---------------------------------------------------------------------------------------------
# the fast paths of the update: shared prompts and pieces of similar length change no number
# ---------------------------------------------------------------------------------------------

def _sampled(policy, n_prompts=3, group_size=4):
    from workbench.rollouts import sample_group
    from workbench.tasks import get_task

    prompts = list(get_task("sum").test["prompt"][:n_prompts])
    prompts[1] = prompts[1] + [{"role": "assistant", "content": "Let"},
                               {"role": "user", "content": "go on"}]    # a longer prompt: padding
    return sample_group(policy.model, policy.tokenizer, prompts, group_size=group_size,
                        max_new_tokens=40, generator=torch.Generator().manual_seed(1))


def test_shared_prompt_logps_and_gradients_equal_whole_rows(tiny_policy):
    """Forwarding each prompt once (keys/values copied to its rows) gives the log-probs and the
    gradients of forwarding every prompt+completion row whole, for any set of rows."""
    trainer = GRPOTrainer(_small(), None, policy=tiny_policy, verbose=False)
    comps = _sampled(tiny_policy)
    assert len(set(comps.lengths.tolist())) > 2, "the fixture must have ragged completions"
    rows = torch.tensor([9, 0, 3, 5, 4, 11, 1])           # mixed groups, any order
    model = tiny_policy.model
    results = {}
    for share in (True, False):
        trainer._share_prompts = lambda m, share=share: share
        model.zero_grad(set_to_none=True)
        logps, ent = trainer.completion_logps(model, comps, rows, with_entropy=True)
        mask = comps.completion_mask[rows, :logps.shape[1]]
        (logps * mask).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[share] = (logps * mask, ent * mask, grads)
    model.zero_grad(set_to_none=True)
    assert results[True][0].shape[1] == int(comps.lengths[rows].max())   # padding cut
    for a, b in zip(results[True], results[False]):          # equal up to float32 rounding
        err = float((a - b).abs().max() / b.abs().max())    # (its size depends on the CPU's
        assert err < 1e-4, err                              # kernels: 1e-5 seen on a Xeon)


def test_length_pieces_partition_rows_and_split_only_when_it_pays():
    from workbench.trainer import length_pieces

    bimodal = torch.tensor([5, 40, 6, 41, 5, 7, 39, 6] * 8)
    pieces = length_pieces(bimodal)
    assert sorted(torch.cat(pieces).tolist()) == list(range(64))          # each row once
    assert len(pieces) >= 2
    assert int(bimodal[pieces[0]].max()) <= 7 and int(bimodal[pieces[-1]].min()) >= 39
    assert len(length_pieces(torch.full((16,), 12))) == 1                  # nothing to gain
    assert len(length_pieces(torch.tensor([10, 11, 12, 12]))) == 1         # too little to gain
    assert len(length_pieces(torch.tensor(list(range(1, 65))), max_pieces=3)) <= 3


def test_update_in_pieces_equals_one_forward_for_every_loss_type(tiny_policy, monkeypatch):
    """The whole update (micro-batches, pieces of similar length, shared prompts) produces the
    gradient one unsplit forward of every row gives, for each loss type."""
    import workbench.trainer as tr

    comps = _sampled(tiny_policy)
    adv = torch.randn(len(comps), generator=torch.Generator().manual_seed(2))
    assert all(len(tr.length_pieces(comps.lengths[i:i + 6])) > 1 for i in (0, 6))  # exercised
    state = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        grads = []
        for fast in (True, False):
            s = _small()
            s = replace(s, grpo=replace(s.grpo, loss_type=loss_type, group_size=4,
                                        prompts_per_step=3, micro_batch_size=6))
            trainer = GRPOTrainer(s, None, policy=tiny_policy, verbose=False)
            if not fast:
                trainer._share_prompts = lambda m: False
                monkeypatch.setattr(tr, "length_pieces", lambda lengths, **k: [torch.arange(
                    len(lengths))])
            trainer.optimizer.step = lambda: grads.append(torch.cat(
                [p.grad.flatten() for p in tiny_policy.model.parameters() if p.grad is not None]))
            trainer._update(comps, adv)
            monkeypatch.undo()
        tiny_policy.model.load_state_dict(state)
        err = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())
        assert err < 1e-4, (loss_type, err)                 # float32 order: 3e-5 on a Xeon


@pytest.mark.parametrize("tier", ["plain", "bnb4"])
def test_shared_prompts_under_lora_and_the_reference_policy(tier):
    """The shared-prompt forward also holds through peft's LoRA wrapper (plain and 4-bit base),
    for the policy and for the reference (adapters disabled), and a KL + two-pass update runs."""
    from workbench.models import load_policy
    from workbench.settings import GRPOSettings, ModelSettings

    if tier == "bnb4":
        pytest.importorskip("bitsandbytes")
    ms = ModelSettings(lora=True, lora_r=8, tier=tier)
    policy = load_policy(ms, device="cpu", verbose=False)
    s = TrainSettings(model=ms, grpo=GRPOSettings(beta=0.04, num_iterations=2, group_size=4,
                                                  prompts_per_step=3, micro_batch_size=6))
    trainer = GRPOTrainer(s, None, policy=policy, verbose=False)
    comps = _sampled(policy)
    rows = torch.tensor([9, 0, 3, 5, 4, 11, 1])
    got = {}
    for share in (True, False):
        trainer._share_prompts = lambda m, share=share: share
        with torch.no_grad():
            logps, _ = trainer.completion_logps(policy.model, comps, rows)
            with policy.reference() as ref:
                ref_logps, _ = trainer.completion_logps(ref, comps, rows)
        mask = comps.completion_mask[rows, :logps.shape[1]]
        got[share] = (logps * mask, ref_logps * mask)
    for a, b in zip(got[True], got[False]):
        assert float((a - b).abs().max()) < 1e-4
    del trainer._share_prompts
    stats = trainer._update(comps, torch.randn(len(comps), generator=torch.Generator().manual_seed(0)))
    assert stats["kl"] > 0 and stats["grad_norm"] > 0
