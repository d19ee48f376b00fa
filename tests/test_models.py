"""Loader tiers, LoRA with the reference as 'adapters off', and 4-bit on CPU."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from workbench.models import choose_tier, load_policy
from workbench.settings import ModelSettings, SettingsError


def test_auto_tier_for_the_tiny_model_is_plain():
    tier, reason = choose_tier(ModelSettings(), torch.device("cpu"))
    assert tier == "plain" and "tiny" in reason


def test_unsloth_asked_for_without_a_gpu_says_what_to_do():
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(SettingsError, match="needs a CUDA GPU"):
        choose_tier(ModelSettings(tier="unsloth"), torch.device("cpu"))


def test_load_prints_one_line_with_tier_and_reason(tiny_path, capsys):
    policy = load_policy(ModelSettings(), verbose=True)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "tier plain" in out[0] and "full fine-tune" in out[0]
    assert policy.trainable_parameters == policy.total_parameters


def test_lora_reference_is_the_model_with_adapters_off(tiny_path):
    policy = load_policy(ModelSettings(lora=True, lora_r=4), verbose=False)
    assert 0 < policy.trainable_parameters < policy.total_parameters / 2
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        base = policy.model(input_ids=ids).logits
        for name, p in policy.model.named_parameters():      # make the adapter do something
            if "lora_B" in name:
                p.add_(0.05)
        tuned = policy.model(input_ids=ids).logits
        with policy.reference() as ref:
            assert ref is policy.model, "no second copy of the weights"
            ref_logits = ref(input_ids=ids).logits
    assert not torch.allclose(base, tuned)
    assert torch.allclose(base, ref_logits, atol=1e-6)


def test_full_finetune_reference_is_a_frozen_copy(tiny_path):
    policy = load_policy(ModelSettings(), verbose=False)
    with policy.reference() as ref:
        assert ref is not policy.model
        assert not any(p.requires_grad for p in ref.parameters())


def test_bnb4_on_cpu_trains_after_generate(tiny_path):
    """QLoRA on CPU, including the AVX512-BF16 trap: a training step after an eval-mode
    generate must work (bitsandbytes would otherwise repack weights for inference only)."""
    pytest.importorskip("bitsandbytes")
    from workbench.rollouts import sample_group

    policy = load_policy(ModelSettings(tier="bnb4", lora=True, lora_r=4), device="cpu",
                         verbose=False)
    assert policy.tier == "bnb4"
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in policy.model.modules())
    sample_group(policy.model, policy.tokenizer, [[{"role": "user", "content": "Add: 1+2+3+4"}]],
                 group_size=2, max_new_tokens=4, generator=torch.Generator().manual_seed(0))
    policy.model.train()
    ids = torch.tensor([[1, 5, 9, 12]])
    loss = policy.model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in policy.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)


def test_4bit_needs_lora(tiny_path):
    with pytest.raises(SettingsError, match="LoRA"):
        load_policy(ModelSettings(tier="bnb4", lora=False), verbose=False)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="could not load model"):
        load_policy(replace(ModelSettings(), model=str(tmp_path)), verbose=False)
