"""workbench.scale: our task and rewards in TRL, veRL and OpenRLHF.

- the config mapping (README glossary as code) on fixed settings;
- the three reward adapters against our own scoring on one shared set of completions;
- veRL's parquet rows; the engines' own reward loaders where their code is importable;
- TRL's GRPOTrainer on the tiny model for a few steps, writing our run folder, read by the
  widgets' row builders; and two processes (torchrun, gloo) ending with identical weights.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from workbench.rewards import score_completions
from workbench.settings import GRPOSettings, SettingsError, TrainSettings
from workbench.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"   # a templated prompt

# (task, question, completion, gold): right, wrong, untagged, hedged, equivalent fraction, empty
CASES = [
    ("sum", "Add: 7+3+5", "7+3=10\n10+5=15\n<answer>15</answer>", "15"),
    ("sum", "Add: 7+3+5", "<answer>13</answer>", "15"),
    ("sum", "Add: 7+3+5", "the answer is 15", "15"),
    ("sum", "Add: 7+3+5", "<answer>15</answer><answer>14</answer>", "15"),
    ("linear", "Solve: 4x+2=12", "4x=12-2=10\nx=10/4\n<answer>10/4</answer>", "5/2"),
    ("linear", "Solve: 4x+2=12", "", "5/2"),
]


def _ours(kind, question, completion, gold):
    task = get_task(kind, n_train=1, n_test=1)
    prompt = [{"role": "user", "content": question}]
    b = score_completions(task.reward_funcs, [prompt], [[{"role": "assistant",
                                                           "content": completion}]],
                          weights=task.reward_weights, columns={"answer": [gold]})
    return float(b.total[0]), b.as_rows()[0]


# --- config mapping -----------------------------------------------------------------------------

@pytest.mark.parametrize("processes,micro,expect", [(1, 64, (64, 1)), (2, 64, (32, 1)),
                                                    (1, 16, (16, 4)), (4, 8, (8, 2))])
def test_batch_shape_keeps_completions_per_step(processes, micro, expect):
    from workbench.scale.trl import batch_shape

    s = TrainSettings(grpo=GRPOSettings(micro_batch_size=micro))
    per_device, accumulation = batch_shape(s, processes)
    assert (per_device, accumulation) == expect
    assert per_device * accumulation * processes == 64


def test_batch_shape_refuses_an_uneven_split():
    from workbench.scale.trl import batch_shape

    s = TrainSettings(grpo=GRPOSettings(group_size=3, prompts_per_step=3, micro_batch_size=9,
                                        generation_batch_size=9))
    with pytest.raises(SettingsError, match="multiple of 2"):
        batch_shape(s, 2)


def test_grpo_config_is_the_glossary(tmp_path):
    from workbench.scale.trl import grpo_config

    g = GRPOSettings(group_size=4, prompts_per_step=6, micro_batch_size=12, max_new_tokens=40,
                     loss_type="dr_grpo", scale_rewards=False, epsilon_low=0.1,
                     epsilon_high=0.3, beta=0.04, num_iterations=2, learning_rate=3e-5)
    s = TrainSettings(grpo=g, steps=7, seed=5)
    c = grpo_config(s, output_dir=tmp_path, processes=2, device="cpu")
    assert c.num_generations == 4
    assert c.per_device_train_batch_size * c.gradient_accumulation_steps * 2 == 24
    assert c.max_completion_length == 40 and c.loss_type == "dr_grpo"
    assert c.scale_rewards == "none" and c.epsilon == 0.1 and c.epsilon_high == 0.3
    assert c.beta == 0.04 and c.num_iterations == 2 and c.learning_rate == 3e-5
    assert c.max_steps == 14 and c.logging_steps == 2       # TRL counts every iteration
    assert c.seed == 5 and c.use_cpu and c.top_k == 0 and not c.mask_truncated_completions
    assert grpo_config(replace(s, grpo=replace(g, scale_rewards=True)), output_dir=tmp_path,
                       processes=1, device="cpu").scale_rewards == "group"


# --- the three reward adapters agree with our scoring -----------------------------------------

@pytest.mark.parametrize("kind,question,completion,gold", CASES)
def test_reward_adapters_match_our_scores(kind, question, completion, gold, monkeypatch):
    from workbench.scale.openrlhf import reward_func
    from workbench.scale.trl import with_row_logging
    from workbench.scale.verl import compute_score

    total, parts = _ours(kind, question, completion, gold)
    task = get_task(kind, n_train=1, n_test=1)
    # TRL: the functions it is given, called as GRPOTrainer._calculate_rewards calls them
    logged = {}
    funcs = with_row_logging(task.reward_funcs)
    assert [f.__name__ for f in funcs] == [f.__name__ for f in task.reward_funcs]
    trl_parts = [f(prompts=[[{"role": "user", "content": question}]],
                   completions=[[{"role": "assistant", "content": completion}]], answer=[gold],
                   trainer_state=None, log_metric=lambda *a: None,
                   completion_ids=[[5] * 7],
                   log_extra=lambda k, v: logged.setdefault(k, v))[0] for f in funcs]
    assert sum(w * p for w, p in zip(task.reward_weights, trl_parts)) == pytest.approx(total)
    assert logged == {"wb_prompt": [question], "wb_answer": [gold], "wb_length": [7]}
    # veRL: response only, one call per sample
    v = compute_score(kind, completion, gold, extra_info={"knobs": "{}"})
    assert v["score"] == pytest.approx(total)
    assert v["answer"] == parts["answer"] and v["acc"] == float(parts["answer"] >= 1)
    # OpenRLHF: prompt + response (+ end-of-turn token) in one query
    monkeypatch.setenv("WB_TASK", kind)
    prompt = CHAT.format(q=question)
    o = reward_func([prompt + completion + "<|im_end|>"], [prompt], [gold])
    assert float(o["rewards"][0]) == pytest.approx(total)
    assert float(o["extra_logs"]["answer"][0]) == parts["answer"]


def test_openrlhf_slices_the_response_out_of_the_query():
    from workbench.scale.openrlhf import response_of

    p = CHAT.format(q="Add: 1+2")
    assert response_of(p + "<answer>3</answer><|im_end|>\n<|endoftext|>", p) == "<answer>3</answer>"
    assert response_of(p + "3 </s>", p) == "3 "
    assert response_of(p.rstrip("\n") + " 3", p) == " 3"    # a decode that differs at the seam
    hostile = p + "<|" * 50_000 + "x" + " " * 50_000          # linear: returns at once
    assert response_of(hostile, p).endswith("x" + " " * 50_000)


def test_task_rewards_for_jsonl_tasks_match_the_loader(tmp_path):
    from workbench.scale import task_rewards
    from workbench.tasks import load_jsonl_task

    f = tmp_path / "g.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "answer": "so #### 2"}) + "\n")
    real = load_jsonl_task("gsm8k", f)
    ours = task_rewards("gsm8k")
    assert [fn.__name__ for fn in ours.reward_funcs] == [fn.__name__ for fn in real.reward_funcs]
    assert ours.reward_weights == real.reward_weights
    with pytest.raises(ValueError, match="unknown data_source"):
        task_rewards("chess")


# --- veRL rows ---------------------------------------------------------------------------------

def test_verl_parquet_rows_score_their_own_gold(tmp_path):
    from datasets import Dataset

    from workbench.scale.verl import compute_score, config_lines, export_parquet

    task = get_task("sum", n_train=6, n_test=3)
    paths = export_parquet(task, tmp_path)
    rows = Dataset.from_parquet(str(paths["train"])).to_list()
    assert len(rows) == 6 and len(Dataset.from_parquet(str(paths["test"]))) == 3
    r = rows[0]
    assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert r["data_source"] == "sum" and r["reward_model"]["style"] == "rule"
    assert r["prompt"] == task.train[0]["prompt"]
    for i, row in enumerate(rows):
        worked = task.writer.solution(tuple(json.loads(task.train[i]["problem"])))
        s = compute_score(row["data_source"], worked, row["reward_model"]["ground_truth"],
                          row["extra_info"])
        assert s["score"] == pytest.approx(1.1) and s["acc"] == 1.0
    assert "reward.custom_reward_function.name=compute_score" in config_lines()


def test_exports_for_verl_and_openrlhf_from_the_command_line(tmp_path, capsys, monkeypatch):
    from workbench.scale import openrlhf, verl

    assert verl.main(["--out", str(tmp_path / "v"), "--limit", "4"]) == 0
    assert "custom_reward_function.path=pkg://workbench.scale.verl" in capsys.readouterr().out
    assert (tmp_path / "v" / "train.parquet").exists()
    assert openrlhf.main(["--out", str(tmp_path / "o")]) == 0
    assert "--reward.remote_url" in capsys.readouterr().out
    row = json.loads((tmp_path / "o" / "train.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt", "answer"}
    module = _module_from(tmp_path / "o" / "wb_reward.py", "wb_reward")
    assert module.reward_func is openrlhf.reward_func
    assert verl.main(["--task", "chess"]) == 2 and openrlhf.main(["--task", "chess"]) == 2
    assert capsys.readouterr().err.count("error: unknown task") == 2


# --- the engines' own loaders (where their code can be imported) ------------------------------

def _module_from(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _verl_loader():
    """veRL's ``load_extern_object``: from an installed veRL, or from its source at WB_VERL_SRC
    (the module is standard-library only; veRL's package __init__ needs Ray)."""
    if importlib.util.find_spec("verl") is not None:
        from verl.utils.import_utils import load_extern_object
        return load_extern_object
    src = os.environ.get("WB_VERL_SRC")
    if not src:
        pytest.skip("veRL is not installable beside this workbench (transformers < 5.11, Ray); "
                    "set WB_VERL_SRC to an unpacked veRL wheel to run its loader")
    path = Path(src) / "verl" / "utils" / "import_utils.py"
    return _module_from(path, "verl_import_utils").load_extern_object


def test_verl_loads_and_calls_compute_score_its_own_way():
    load_extern_object = _verl_loader()
    fn = load_extern_object(module_path="pkg://workbench.scale.verl", object_name="compute_score")
    for kind, _, completion, gold in CASES:
        total, _ = _ours(kind, "", completion, gold)
        # as verl's NaiveRewardManager.run_single calls it
        out = fn(data_source=kind, solution_str=completion, ground_truth=gold,
                 extra_info={"num_turns": None, "rollout_reward_scores": {}})
        assert out["score"] == pytest.approx(total)


def _openrlhf_executor():
    """OpenRLHF's ``SingleTurnAgentExecutor``: installed, or from WB_OPENRLHF_SRC (agent.py needs
    only aiohttp and OpenRLHF's logger, stubbed here; the package __init__ needs more)."""
    if importlib.util.find_spec("openrlhf") is not None:
        from openrlhf.utils.agent import SingleTurnAgentExecutor
        return SingleTurnAgentExecutor
    src = os.environ.get("WB_OPENRLHF_SRC")
    if not src:
        pytest.skip("OpenRLHF is not installable on a CPU machine (flash-attn, DeepSpeed, Ray); "
                    "set WB_OPENRLHF_SRC to an unpacked OpenRLHF wheel to run its loader")
    import logging

    stub = types.ModuleType("openrlhf.utils.logging_utils")
    stub.init_logger = logging.getLogger
    for name in ("openrlhf", "openrlhf.utils"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["openrlhf.utils.logging_utils"] = stub
    path = Path(src) / "openrlhf" / "utils" / "agent.py"
    return _module_from(path, "openrlhf_agent").SingleTurnAgentExecutor


def test_openrlhf_loads_and_calls_reward_func_its_own_way(tmp_path, monkeypatch):
    from workbench.scale.openrlhf import write_reward_file

    executor_cls = _openrlhf_executor()
    monkeypatch.setenv("WB_TASK", "sum")
    executor = executor_cls(remote_rm_url=str(write_reward_file(tmp_path / "wb_reward.py")))
    for kind, question, completion, gold in CASES[:4]:
        total, _ = _ours(kind, question, completion, gold)
        prompt = CHAT.format(q=question)
        out = asyncio.run(executor._fetch_rewards_via_func(
            [prompt + completion + "<|im_end|>"], [prompt], [gold]))
        assert float(out[0]["rewards"][0]) == pytest.approx(total)


# --- TRL on the tiny model --------------------------------------------------------------------

def _small(steps: int, **top) -> TrainSettings:
    g = GRPOSettings(group_size=4, prompts_per_step=4, generation_batch_size=16,
                     micro_batch_size=16, max_new_tokens=24, learning_rate=3e-4)
    return TrainSettings(grpo=g, steps=steps, eval_examples=20, checkpoint_every=100,
                         device="cpu", threads=1, **top)


def test_trl_trains_tiny_and_the_widgets_read_its_run(tiny_path, tmp_path):
    from workbench.runs import Run, describe_run
    from workbench.scale.trl import train_with_trl
    from workbench.widgets import (GroupInspector, TraceBrowser, dashboard_series, group_rows,
                                   trace_rows)

    out = tmp_path / "trl"
    summary = train_with_trl(_small(3), out, verbose=False)
    run = Run.open(out)
    assert summary["engine"] == "trl" and summary["steps"] == 3 and summary["processes"] == 1
    assert summary["parameter_digests"][0] != summary["parameter_digest_before"]  # it learned
    assert [e["label"] for e in run.evals()] == ["before", "after"]
    assert (out / "rewards.png").exists() and (out / "trl_config.json").exists()
    metrics = run.metrics()
    assert [m["step"] for m in metrics] == [1, 2, 3]
    traces = run.traces()
    assert len(traces) == 3 * 16
    task = get_task("sum")
    for t in traces[:16]:                               # TRL's rewards are our scores
        assert t["prompt"].startswith("Add: ") and t["answer"]
        total, parts = _ours("sum", t["prompt"], t["completion"], t["answer"])
        assert t["reward"] == pytest.approx(total) and t["components"] == parts
    assert sum(t["reward"] for t in traces if t["step"] == 1) / 16 == pytest.approx(
        metrics[0]["reward_mean"], abs=1e-5)
    assert len({t["prompt"] for t in traces if t["step"] == 1}) == 4
    assert task.reward_weights == (1.0, 0.1)
    # the widgets' row builders and views, unchanged, over a TRL run
    series = dashboard_series(metrics)
    assert series["step"] == [1, 2, 3] and len(series["reward/answer"]) == 3
    group = group_rows(traces, step=2, group=1)
    assert [r["index"] for r in group] == [0, 1, 2, 3] and "verdict" in group[0]
    assert len(trace_rows(out, step=3)) == 16
    assert TraceBrowser(run).rows and GroupInspector(run).rows
    assert "finished" in describe_run(out)


def test_two_processes_train_in_sync(tiny_path, tmp_path):
    """torchrun, 2 CPU processes, gloo: each generates half the completions, DDP averages the
    gradients; the weights must be identical on both after the steps (and not the initial ones)."""
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "workbench", "trl-train", "--out", str(out), "--steps", "2",
           "--group-size", "4", "--prompts-per-step", "4", "--max-new-tokens", "16",
           "--eval-examples", "1", "--threads", "1", "--lr", "3e-4"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "in sync" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and len(summary["parameter_digests"]) == 2
    assert len(set(summary["parameter_digests"])) == 1
    assert summary["parameter_digests"][0] != summary["parameter_digest_before"]
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 2 * 16                        # both ranks' completions, gathered
    assert len({t["prompt"] for t in traces if t["step"] == 1}) == 4


def test_trl_train_command_says_what_is_wrong(tmp_path, capsys, monkeypatch):
    from workbench.__main__ import main

    assert main(["trl-train", "--out", str(tmp_path / "x"), "--task", "chess"]) == 2
    assert "unknown" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")               # 9 completions cannot split in two
    assert main(["trl-train", "--out", str(tmp_path / "y"), "--group-size", "3",
                 "--prompts-per-step", "3"]) == 2
    assert "multiple of 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# --- TRL with our environments: episodes through rollout_func -------------------------------

def test_trl_trains_episodes_with_environment_tokens_masked(tmp_path, monkeypatch):
    """`--task code` under TRL: our sampler runs each episode (turns with CodeFeedbackEnv), TRL
    trains on the model's tokens only (its loss mask is our action_mask), the rewards score the
    model's text of the episode, and the traces carry the turns."""
    import torch
    from trl import GRPOTrainer

    from workbench.models import load_policy
    from workbench.runs import Run
    from workbench.scale import trl as wb_trl
    from workbench.settings import TaskSettings

    tokenizer = load_policy(task="code", verbose=False).tokenizer     # builds it if missing
    seen = []                         # (what rollout_func returned, what TRL trains on)
    real_rollout, real_score = wb_trl.episode_rollout, GRPOTrainer._generate_and_score_completions

    def recording_rollout(task, settings):
        fn = real_rollout(task, settings)

        def rollout(prompts, trainer):
            out = fn(prompts, trainer)
            seen.append({"rollout": out})
            return out
        return rollout

    def recording_score(self, inputs):
        out = real_score(self, inputs)
        seen[-1]["trl"] = out
        return out

    monkeypatch.setattr(wb_trl, "episode_rollout", recording_rollout)
    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", recording_score)
    g = GRPOSettings(group_size=2, prompts_per_step=2, generation_batch_size=4,
                     micro_batch_size=4, max_new_tokens=48, max_episode_tokens=200,
                     learning_rate=3e-4)
    s = TrainSettings(task=TaskSettings(name="code"), grpo=g, steps=2, eval_examples=2,
                      checkpoint_every=100, device="cpu", threads=1)
    out = tmp_path / "trl-code"
    summary = wb_trl.train_with_trl(s, out, verbose=False)
    assert summary["task"] == "code" and summary["steps"] == 2 and len(seen) == 2

    env_tokens = 0
    for step in seen:
        r, t = step["rollout"], step["trl"]
        assert len(r["completion_ids"]) == 4 and t["completion_ids"].shape[0] == 4
        trained = t["completion_mask"] * t["tool_mask"]         # TRL's loss mask (B, T)
        for i, (ids, mask) in enumerate(zip(r["completion_ids"], r["env_mask"])):
            n = len(ids)
            assert trained[i, :n].tolist() == mask and not trained[i, n:].any()
            assert t["completion_ids"][i, :n].tolist() == ids
            ids_t, mask_t = torch.tensor(ids), torch.tensor(mask, dtype=torch.bool)
            # the masked-out tokens are the environment's replies, the rest the model's turns
            replies = [x["text"] for x in r["turns"][i] if x["role"] == "env"]
            model = [x["text"] for x in r["turns"][i] if x["role"] == "model"]
            assert sum(x["role"] == "model" for x in r["turns"][i]) == len(model) >= 1
            env_text = tokenizer.decode(ids_t[~mask_t], skip_special_tokens=True)
            assert all(reply.splitlines()[0] in env_text for reply in replies)
            assert (not replies) == bool(mask_t.all())
            assert r["wb_length"][i] == int(mask_t.sum())
            env_tokens += int((~mask_t).sum())
    assert env_tokens > 0                       # some episode went on after feedback

    # the run folder: whole episodes in the traces, rewards as our engine scores them
    run = Run.open(out)
    traces = run.traces()
    assert len(traces) == 2 * 4 and [m["step"] for m in run.metrics()] == [1, 2]
    assert all(m["turns_mean"] >= 1 for m in run.metrics())
    assert [e["label"] for e in run.evals()] == ["before", "after"]
    assert all(x.get("turns") for e in run.evals() for x in e["examples"])   # episodes too
    from workbench.widgets_episodes import EpisodeViewer, episode_rows
    talked = [t for t in traces if t["env_tokens"]]
    assert talked and {"model", "env", "end"} <= {r["who"] for r in episode_rows(talked[0])}
    assert EpisodeViewer(run).rows[-1]["who"] == "end"
    task = get_task("code")
    rows = {r["question"]: r for r in task.train}
    for tr in traces:
        models = [x["text"] for x in tr["turns"] if x["role"] == "model"]
        assert tr["completion"] == "\n".join(models) and tr["ended"]
        row = rows[tr["prompt"]]
        columns = {k: [v] for k, v in row.items() if k != "prompt"}
        final = {"turns": len(models), "ended": tr["ended"],
                 **{k: v for k, v in tr["turns"][-1]["info"].items()}}
        b = score_completions(task.reward_funcs, [row["prompt"]],
                              [[{"role": "assistant", "content": tr["completion"]}]],
                              weights=task.reward_weights,
                              columns={**columns, "turns": [tr["turns"]], "final_info": [final]})
        assert tr["components"] == b.as_rows()[0] and tr["reward"] == pytest.approx(
            float(b.total[0]))


def test_trl_train_refuses_vllm_for_an_environment_task(tmp_path, capsys):
    from workbench.__main__ import main

    assert main(["trl-train", "--out", str(tmp_path / "v"), "--task", "code",
                 "--vllm", "colocate"]) == 2
    err = capsys.readouterr().err
    assert "drop --vllm" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v").exists()
