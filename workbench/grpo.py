"""GRPO maths: group-relative advantages, the clipped policy-ratio loss and its aggregations.

Everything here is a pure function of tensors so it can be checked on small fixed inputs (and
against TRL's implementation, see tests/test_grpo_math.py). The training loop that uses it lives in
``workbench.trainer``.

Vocabulary (TRL's names in brackets): a *group* is the ``group_size`` [num_generations]
completions of one prompt; the *advantage* of a completion is its reward relative to its siblings;
``epsilon_low`` / ``epsilon_high`` clip the policy ratio (DAPO's clip-higher when they differ);
``loss_type`` chooses how per-token losses become one number:

========== ===================================================== ==============================
loss_type  aggregation                                           from
========== ===================================================== ==============================
grpo       mean over each sequence's tokens, then over sequences DeepSeekMath (length-biased)
bnpo       mean over all tokens of the micro-batch               TRL
dr_grpo    sum over tokens / (sequences * max_completion_length) Dr. GRPO (no length bias)
dapo       sum over tokens / all tokens of the whole step batch  DAPO (token-level)
========== ===================================================== ==============================
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def group_advantages(rewards: Tensor, group_size: int, *, scale: bool = True,
                     eps: float = 1e-4) -> Tensor:
    """Advantage of each completion relative to its siblings.

    rewards: (num_prompts * group_size,), siblings adjacent. Same shape out.
    ``scale=True`` divides by the group's (unbiased) std as in GRPO; ``scale=False`` is Dr. GRPO,
    which keeps the raw difference so easy and hard prompts are not re-weighted.
    A group whose rewards are all equal teaches nothing: its advantages are 0.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, "
                         f"got shape {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)                          # (prompts, group)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    return centred.flatten()


def zero_std_groups(rewards: Tensor, group_size: int) -> Tensor:
    """(num_prompts,) bool: groups whose completions all scored the same (no learning signal)."""
    grouped = rewards.view(-1, group_size)
    return (grouped.max(dim=1).values - grouped.min(dim=1).values).abs() < 1e-8


def token_logps(logits: Tensor, ids: Tensor) -> Tensor:
    """log p(ids) under ``logits``: (B, T, V), (B, T) -> (B, T), without a (B, T, V) log-softmax copy."""
    picked = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy of each next-token distribution: (B, T, V) -> (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def kl_k3(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """Per-token KL(policy || reference) estimate ``exp(r) - r - 1`` with ``r = ref - policy``
    (Schulman's k3: unbiased, always >= 0). Shapes (B, T)."""
    r = ref_logps - logps
    return torch.exp(r) - r - 1


@dataclass(frozen=True)
class LossParts:
    """The loss and what a learner should look at besides it (all detached floats)."""

    loss: Tensor                 # scalar, carries the gradient
    clip_low: float              # share of tokens whose ratio fell below 1-eps_low with A<0
    clip_high: float             # share of tokens whose ratio rose above 1+eps_high with A>0
    kl: float                    # mean per-token KL to the reference (0 when beta=0)
    ratio_mean: float

    @property
    def clip_fraction(self) -> float:
        return self.clip_low + self.clip_high


def grpo_loss(logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor, *,
              loss_type: str = "dapo", epsilon_low: float = 0.2, epsilon_high: float = 0.28,
              beta: float = 0.0, ref_logps: Tensor | None = None,
              max_completion_length: int | None = None, num_items_in_batch: float | None = None,
              num_micro_batches: int = 1, batch_rows: int | None = None,
              batch_tokens: float | None = None) -> LossParts:
    """Clipped policy-ratio loss of one micro-batch.

    logps, old_logps, ref_logps, mask: (B, T) -- current, sampling-time and reference log-probs
    of the completion tokens, and 1 for real tokens. advantages: (B,) or (B, T).
    With one optimiser pass per batch (num_iterations=1) old_logps is logps.detach(): the ratio
    is exactly 1, nothing is clipped and the gradient is the plain policy gradient.

    ``num_micro_batches`` is how many micro-batches add up to one optimiser step (gradient
    accumulation); ``num_items_in_batch`` (dapo) is the number of real tokens in the whole step.
    ``max_completion_length`` (dr_grpo) defaults to T.

    A micro-batch may itself be forwarded in pieces (the trainer groups completions of similar
    length): pass the whole micro-batch's sequence count ``batch_rows`` and real-token count
    ``batch_tokens`` and the pieces' losses add up exactly to the micro-batch's loss, whatever the
    loss type. Left out, they are this call's own counts.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    mask = mask.to(logps.dtype)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)                           # (B, 1)
    ratio = torch.exp(logps - old_logps)                               # (B, T)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)   # (B, T)
    kl_mean = 0.0
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs ref_logps (the reference policy's log-probs)")
        kl = kl_k3(logps, ref_logps)
        per_token = per_token + beta * kl
        kl_mean = float(((kl * mask).sum() / mask.sum().clamp(min=1.0)).detach())

    n_tokens = mask.sum().clamp(min=1.0)
    rows = per_token.shape[0] if batch_rows is None else batch_rows
    tokens = n_tokens if batch_tokens is None else max(float(batch_tokens), 1.0)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / rows / num_micro_batches
    elif loss_type == "bnpo":
        loss = (per_token * mask).sum() / tokens / num_micro_batches
    elif loss_type == "dr_grpo":
        length = max_completion_length or per_token.shape[1]
        loss = (per_token * mask).sum() / (rows * length) / num_micro_batches
    else:  # dapo: every token of the step counts once, however the step is split
        normaliser = tokens if num_items_in_batch is None else max(float(num_items_in_batch), 1.0)
        loss = (per_token * mask).sum() / normaliser

    with torch.no_grad():
        low = ((ratio < 1 - epsilon_low) & (advantages < 0)).to(mask.dtype)
        high = ((ratio > 1 + epsilon_high) & (advantages > 0)).to(mask.dtype)
        clip_low = float((low * mask).sum() / n_tokens)
        clip_high = float((high * mask).sum() / n_tokens)
        ratio_mean = float((ratio * mask).sum() / n_tokens)
    return LossParts(loss=loss, clip_low=clip_low, clip_high=clip_high, kl=kl_mean,
                     ratio_mean=ratio_mean)
