"""GRPO maths on small fixed inputs, checked by hand and against TRL's own loss."""
from __future__ import annotations

import types
from collections import defaultdict

import pytest
import torch

from workbench.grpo import (LOSS_TYPES, group_advantages, grpo_loss, kl_k3, token_entropy,
                            token_logps, zero_std_groups)


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    adv = group_advantages(rewards, group_size=4)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()          # unbiased, as GRPO/TRL use
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4)
    assert torch.allclose(adv[:4], expected)
    assert torch.equal(adv[4:], torch.zeros(4)), "a group with equal rewards teaches nothing"


def test_dr_grpo_keeps_raw_differences():
    rewards = torch.tensor([3.0, 1.0, 2.0, 2.0])
    adv = group_advantages(rewards, group_size=2, scale=False)
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, 0.0, 0.0]))


def test_group_advantages_rejects_ragged_groups():
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.zeros(5), group_size=4)


def test_zero_std_groups():
    flags = zero_std_groups(torch.tensor([1.0, 1.0, 0.0, 1.0]), group_size=2)
    assert flags.tolist() == [True, False]


def test_token_logps_matches_log_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    ids = torch.randint(0, 11, (3, 5), generator=g)
    ref = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    assert torch.allclose(token_logps(logits, ids), ref, atol=1e-6)
    uniform = token_entropy(torch.zeros(1, 1, 8))
    assert torch.allclose(uniform, torch.log(torch.tensor(8.0)))


def test_kl_k3_is_zero_at_equality_and_positive_otherwise():
    lp = torch.tensor([[-1.0, -2.0]])
    assert torch.allclose(kl_k3(lp, lp), torch.zeros_like(lp))
    assert (kl_k3(lp, lp + 0.3) > 0).all()


def test_ratio_one_gives_the_plain_policy_gradient():
    """num_iterations=1: old = logps.detach(), ratio 1, loss gradient = -A * grad(log p) / norm."""
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 2)
    parts = grpo_loss(logps, logps.detach(), adv, mask, loss_type="bnpo")
    parts.loss.backward()
    assert torch.allclose(logps.grad, -adv[:, None].expand(2, 2) / 4)
    assert parts.clip_fraction == 0.0


def test_clip_higher_lets_good_tokens_rise_further():
    old = torch.log(torch.tensor([[0.5]]))
    new = torch.log(torch.tensor([[0.62]])).requires_grad_()    # ratio 1.24
    adv = torch.tensor([1.0])
    sym = grpo_loss(new, old, adv, torch.ones(1, 1), epsilon_low=0.2, epsilon_high=0.2)
    dapo = grpo_loss(new, old, adv, torch.ones(1, 1), epsilon_low=0.2, epsilon_high=0.28)
    assert sym.clip_high == 1.0 and dapo.clip_high == 0.0
    (g_sym,) = torch.autograd.grad(sym.loss, new)
    (g_dapo,) = torch.autograd.grad(dapo.loss, new)
    assert g_sym.abs().item() == 0.0 and g_dapo.abs().item() > 0.0


# ---------------------------------------------------------------------------------------------
# Against TRL: run GRPOTrainer._compute_loss (trl 1.14.2) on the same tensors.
# ---------------------------------------------------------------------------------------------

class _Accel:
    num_processes = 1

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _trl_loss(loss_type, logps, old, ref, adv, mask, beta, eps_low, eps_high, max_len):
    from trl import GRPOTrainer

    def fake_logps(self, model, input_ids, attention_mask, logits_to_keep, **kwargs):
        return logps, torch.zeros_like(logps), None

    fake = types.SimpleNamespace(
        loss_type=loss_type, beta=beta, epsilon_low=eps_low, epsilon_high=eps_high,
        importance_sampling_level="token", top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, use_vllm=False, vllm_importance_sampling_correction=False,
        aux_loss_enabled=False, _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1,
        max_completion_length=max_len, accelerator=_Accel(), model=torch.nn.Linear(1, 1),
        args=types.SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    fake._get_per_token_logps_and_entropies = types.MethodType(fake_logps, fake)
    B, T = logps.shape
    inputs = {"prompt_ids": torch.zeros(B, 2, dtype=torch.long),
              "prompt_mask": torch.ones(B, 2, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old,
              "num_items_in_batch": mask.sum()}
    if beta:
        inputs["ref_per_token_logps"] = ref
    return GRPOTrainer._compute_loss(fake, None, inputs), fake._metrics["train"]


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_matches_trl(loss_type, beta):
    pytest.importorskip("trl")
    g = torch.Generator().manual_seed(7)
    B, T = 6, 5
    logps = -torch.rand(B, T, generator=g) * 3
    old = logps + torch.randn(B, T, generator=g) * 0.3       # ratios away from 1: clipping happens
    ref = logps + torch.randn(B, T, generator=g) * 0.2
    adv = torch.randn(B, generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    theirs, trl_metrics = _trl_loss(loss_type, logps, old, ref, adv, mask, beta, 0.2, 0.28, T)
    ours = grpo_loss(logps, old, adv, mask, loss_type=loss_type, epsilon_low=0.2,
                     epsilon_high=0.28, beta=beta, ref_logps=ref, max_completion_length=T,
                     num_items_in_batch=float(mask.sum()))
    assert torch.allclose(ours.loss, theirs, atol=1e-6), (ours.loss, theirs)
    assert ours.clip_low == pytest.approx(trl_metrics["clip_ratio/low_mean"][0], abs=1e-6)
    assert ours.clip_high == pytest.approx(trl_metrics["clip_ratio/high_mean"][0], abs=1e-6)
    assert ours.clip_low + ours.clip_high > 0, "the fixture must exercise clipping"
    if beta:
        assert ours.kl == pytest.approx(trl_metrics["kl"][0], rel=1e-5)


def _random_batch(*, seed: int, T: int, keep: float, B: int = 8):
    """Log-probs (with grad), old log-probs, advantages and a ragged mask (first token kept)."""
    g = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(B, T, generator=g)).requires_grad_()
    old = logps.detach() + 0.1 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = (torch.rand(B, T, generator=g) > 1 - keep).long()
    mask[:, 0] = 1
    return logps, old, adv, mask


def test_micro_batches_add_up_to_the_full_batch():
    """Split a step into micro-batches: summed gradients equal the one-batch gradient."""
    logps, old, adv, mask = _random_batch(seed=3, T=4, keep=0.8)
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        whole = grpo_loss(logps, old, adv, mask, loss_type=loss_type,
                          num_items_in_batch=float(mask.sum())).loss
        (g_whole,) = torch.autograd.grad(whole, logps)
        parts = sum(grpo_loss(logps[sl], old[sl], adv[sl], mask[sl], loss_type=loss_type,
                              num_items_in_batch=float(mask.sum()), num_micro_batches=2).loss
                    for sl in (slice(0, 4), slice(4, 8)))
        (g_parts,) = torch.autograd.grad(parts, logps)
        if loss_type in ("dr_grpo", "dapo", "grpo"):
            assert torch.allclose(g_whole, g_parts, atol=1e-6), loss_type
        else:  # bnpo normalises per micro-batch (as TRL does): equal only for equal token counts
            assert g_parts.abs().sum() > 0


def test_pieces_of_a_micro_batch_add_up_exactly_for_every_loss_type():
    """Forwarding one micro-batch in pieces (batch_rows / batch_tokens of the whole micro-batch)
    gives its loss and gradient exactly, bnpo and grpo included; clip counts stay per piece."""
    logps, old, adv, mask = _random_batch(seed=4, T=5, keep=0.7)
    pieces = (torch.tensor([0, 3, 7]), torch.tensor([1, 2]), torch.tensor([4, 5, 6]))
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        whole = grpo_loss(logps, old, adv, mask, loss_type=loss_type, num_micro_batches=2).loss
        (g_whole,) = torch.autograd.grad(whole, logps)
        total = sum(grpo_loss(logps[p], old[p], adv[p], mask[p], loss_type=loss_type,
                              num_micro_batches=2, batch_rows=8,
                              batch_tokens=float(mask.sum())).loss for p in pieces)
        (g_total,) = torch.autograd.grad(total, logps)
        assert float(total) == pytest.approx(float(whole), rel=1e-6), loss_type
        assert torch.allclose(g_whole, g_total, atol=1e-7), loss_type
