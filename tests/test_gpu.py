"""GPU-only checks (marker ``gpu``; conftest skips them without CUDA).

A randomly initialised model with Qwen2.5-0.5B's published shape (no download) is loaded through
``workbench.models.load_policy`` on each tier this machine has (bnb4, plain bf16, and unsloth
when it imports), trained for a few real GRPO steps with ``workbench.trainer.GRPOTrainer`` on the
``sum`` task's prompts, and measured: the pre-flight estimate must be within 25% of
``torch.cuda.max_memory_allocated``, and the memory held between steps must not grow.

unsloth patches transformers when imported, so its tier runs in a child process that imports it
first (as the package requires); the other tiers run here.

These tests have not been run yet: no machine of this project's CI has a GPU. Run them with
``.venv/bin/python -m pytest -q tests/test_gpu.py`` on a CUDA machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.memory import (
    GiB, MemoryTracker, check_fits, device_budget_bytes, estimate_for_settings,
    estimate_peak_memory, free_bytes_now, generation_chunk_size, longest_prompt_tokens,
    qwen2_config, save_random_model, PUBLISHED_SHAPES,
)
from workbench.settings import GRPOSettings, ModelSettings, SettingsError, TrainSettings

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
STEPS = 6


@pytest.fixture(scope="module")
def qwen05_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen2.5-0.5b-random")
    save_random_model(qwen2_config("Qwen2.5-0.5B"), folder, dtype="bfloat16")
    return folder


def run_tier(folder: str, tier: str, *, gradient_checkpointing: bool = True,
             steps: int = STEPS) -> dict:
    """Load ``folder`` on ``tier``, train ``steps`` GRPO steps, return estimate vs measurement."""
    from workbench.models import load_policy
    from workbench.tasks import get_task
    from workbench.trainer import GRPOTrainer

    device = torch.device("cuda")
    ms = ModelSettings(model=str(folder), tier=tier, lora=True, lora_r=16,
                       gradient_checkpointing=gradient_checkpointing, max_seq_length=512)
    settings = TrainSettings(model=ms, steps=steps, grpo=GRPOSettings(
        group_size=8, prompts_per_step=2, generation_batch_size=16, micro_batch_size=8,
        max_new_tokens=128, learning_rate=1e-5))
    policy = load_policy(ms, device=device, verbose=False)
    task = get_task("sum", n_train=200, n_test=10)
    prompt_tokens = longest_prompt_tokens(policy.tokenizer, task.train["prompt"])
    est = estimate_for_settings(settings, policy.model.config, tier=policy.tier,
                                prompt_tokens=prompt_tokens)
    trainer = GRPOTrainer(settings, policy=policy, task=task, verbose=False)
    torch.cuda.synchronize()
    tracker = MemoryTracker(device)                  # resets the peak counter: weights are in
    lengths = []
    for step in range(1, steps + 1):
        m = trainer.step()
        torch.cuda.synchronize()
        tracker.record(step)
        lengths.append(m["completion_length"])
        assert m["loss"] == m["loss"], "loss is NaN"
    return {"tier": policy.tier, "estimate": est.peak_allocated, "measured": tracker.peak,
            "creep": tracker.creep_bytes(after_step=2),
            "peak_creep": tracker.peak_creep_bytes(after_step=2),
            "completion_lengths": lengths, "explain": est.explain()}


def _check(result: dict) -> None:
    error = result["estimate"] / result["measured"] - 1
    assert abs(error) <= 0.25, (
        f"estimate {result['estimate'] / GiB:.2f} GiB vs measured {result['measured'] / GiB:.2f} "
        f"GiB ({error:+.0%})\n{result['explain']}")
    assert result["creep"] <= 32 * 2 ** 20, f"memory held between steps grew by {result['creep']}"
    assert result["peak_creep"] <= 0.05 * result["measured"], "per-step peak grew"


@pytest.mark.parametrize("tier,ckpt", [("bnb4", True), ("bnb4", False), ("plain", True)])
def test_tier_estimate_within_25_percent_and_no_creep(qwen05_folder, tier, ckpt):
    if tier == "bnb4":
        pytest.importorskip("bitsandbytes")
    result = run_tier(str(qwen05_folder), tier, gradient_checkpointing=ckpt)
    assert result["tier"] == tier
    # a random model almost never samples EOS: completions run to max_new_tokens, the worst case
    assert min(result["completion_lengths"]) > 100
    _check(result)


def test_unsloth_tier_in_its_own_process(qwen05_folder):
    import importlib.util

    if importlib.util.find_spec("unsloth") is None:
        pytest.skip("unsloth is not installed (WB_GPU=1 bash scripts/setup.sh)")
    code = (
        "import unsloth, json, sys\n"                        # first, so it can patch transformers
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.test_gpu import run_tier\n"
        f"r = run_tier({str(qwen05_folder)!r}, 'unsloth')\n"
        "print('RESULT ' + json.dumps(r))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=1800)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"unsloth run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(line[len("RESULT "):])
    assert result["tier"] == "unsloth"
    _check(result)


def test_preflight_refuses_what_cannot_fit_this_device():
    budget = device_budget_bytes("cuda")
    assert budget and budget <= torch.cuda.get_device_properties(0).total_memory + 2 * GiB
    huge = estimate_peak_memory(PUBLISHED_SHAPES["Qwen2.5-3B"], tier="plain", group_size=8,
                                prompts_per_step=8, prompt_tokens=512, completion_tokens=4096,
                                lora_r=None, micro_batch_size=64, generation_batch_size=64,
                                gradient_checkpointing=False)
    with pytest.raises(SettingsError, match="Biggest part"):
        check_fits(huge, budget)


def test_generation_chunk_fits_the_free_memory(qwen05_folder):
    from workbench.models import load_policy
    from workbench.rollouts import sample_group

    policy = load_policy(ModelSettings(model=str(qwen05_folder), tier="plain", lora=True),
                         device="cuda", verbose=False)
    free = free_bytes_now("cuda")
    n = generation_chunk_size(policy.model.config, free_bytes=free, prompt_tokens=40,
                              completion_tokens=64, dtype_bytes=2, tier="plain", max_size=256,
                              multiple_of=8)
    assert 8 <= n <= 256
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    prompts = ["Add: 1+2+3"] * (n // 8)
    sample_group(policy.model, policy.tokenizer, prompts, group_size=8, max_new_tokens=64,
                 batch_size=n)
    used = torch.cuda.max_memory_allocated() - before
    assert used <= 0.6 * free * 1.25                 # the chunk kept to its share of free memory
