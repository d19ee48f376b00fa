"""Training on the tiny model: weights move, reward rises, runs resume after SIGKILL exactly."""
from __future__ import annotations

import json
import os
import signal
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
def test_sigkill_then_resume_loses_and_duplicates_nothing(tiny_path, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(ref), check=True, env=env, cwd=ROOT, capture_output=True)
    victim = tmp_path / "victim"
    proc = subprocess.Popen(_train_cmd(victim), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    metrics = victim / "metrics.jsonl"
    while time.time() < deadline:                         # kill between checkpoints 4 and 8
        if metrics.exists() and metrics.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = metrics.read_text().count("\n")
    assert 6 <= killed_at < 12
    res = subprocess.run([sys.executable, "-m", "workbench", "train", "--resume", str(victim)],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    got, want = Run.open(victim).metrics(), Run.open(ref).metrics()
    assert [m["step"] for m in got] == list(range(1, 13))
    assert len(Run.open(victim).traces()) == len(Run.open(ref).traces())
    # restored weights, optimiser, RNG and data position: the same run, number for number
    assert [m["reward_mean"] for m in got] == [m["reward_mean"] for m in want]
    assert [t["completion"] for t in Run.open(victim).traces()] == \
        [t["completion"] for t in Run.open(ref).traces()]
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["steps"] == 12


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
