"""GRPO on a continuous-thought model: the thoughts are deterministic, the answer is sampled.

A Coconut model's thoughts are hidden states, not tokens, so there is nothing to sample in them:
the policy is the distribution of the *visible* tokens given the prompt and its thoughts. The
gradient still reaches the thoughts (each is a function of the weights through
``forward_with_thoughts``), so reinforcement can reshape what they carry. The loss is
``workbench.grpo.grpo_loss`` with one optimiser pass per batch (old log-probs = current ones,
detached: the plain policy gradient with group-relative advantages).

Rewards come from ``verifiers.verify_math``, exactly as for any completion.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class GRPOStepResult:
    """One optimiser step of ``grpo_step`` (floats, detached)."""

    reward: float                     # mean reward of the sampled completions
    zero_std: float                   # share of groups whose completions all scored the same
    loss: float


def completion_logps(model, tokenizer, prompt_ids: list[list[int]], completions: list[list[int]],
                     *, n_thoughts: int):
    """Log-probs of each completion after its prompt, ``<bot>``, ``n_thoughts`` thoughts and
    ``<eot>``, with gradients (through the thoughts too).

    Returns (logps (B, T), mask (B, T) bool): T is the longest completion.
    """
    from ..grpo import token_logps
    from .coconut import BOT, EOT, LATENT, collate, forward_with_thoughts

    bot, eot, latent = tokenizer.convert_tokens_to_ids([BOT, EOT, LATENT])
    pairs = []
    for prompt, tail in zip(prompt_ids, completions):
        hidden = [bot] + [latent] * n_thoughts + [eot]
        pairs.append((list(prompt) + hidden + list(tail),
                      [-100] * (len(prompt) + len(hidden)) + list(tail)))
    input_ids, mask, labels, start = collate(pairs, prompt_lens=[len(p) for p in prompt_ids],
                                             pad_id=tokenizer.pad_token_id)
    logits, _ = forward_with_thoughts(model, input_ids, mask, latent_start=start,
                                      n_latent=n_thoughts)            # (B, T - tail, V)
    target = labels[:, start + n_thoughts + 1:]                       # what each position predicts
    return token_logps(logits[:, :-1], target.clamp(min=0)), target != -100


def grpo_step(model, optimizer, tokenizer, pairs: list[tuple], *, n_thoughts: int,
              group_size: int = 8, temperature: float = 1.0, generator=None,
              max_new_tokens: int = 12) -> GRPOStepResult:
    """Sample ``group_size`` answers per (writer, problem) pair after the model's thoughts,
    reward them with ``verify_math``, and take one GRPO (dapo-normalised) step."""
    import torch
    from verifiers import verify_math

    from ..grpo import group_advantages, grpo_loss, zero_std_groups
    from .coconut import answer_with_thoughts, encode_prompt

    rows = [(w, p) for w, p in pairs for _ in range(group_size)]     # siblings adjacent
    prompts = [w.row(p)["prompt"] for w, p in rows]
    model.eval()
    answers = answer_with_thoughts(model, tokenizer, prompts, n_thoughts=n_thoughts,
                                   temperature=temperature, generator=generator,
                                   max_new_tokens=max_new_tokens)
    rewards = torch.tensor([float(verify_math(a.text, w.gold(p)).correct)
                            for a, (w, p) in zip(answers, rows)])     # (B,)
    advantages = group_advantages(rewards, group_size)                # (B,)
    model.train()
    logps, mask = completion_logps(model, tokenizer, [encode_prompt(tokenizer, p) for p in prompts],
                                   [list(a.token_ids) for a in answers], n_thoughts=n_thoughts)
    parts = grpo_loss(logps, logps.detach(), advantages, mask)
    optimizer.zero_grad(set_to_none=True)
    parts.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    model.eval()
    return GRPOStepResult(reward=float(rewards.mean()),
                          zero_std=float(zero_std_groups(rewards, group_size).float().mean()),
                          loss=float(parts.loss.detach()))


def train_grpo(model, tokenizer, writers: list, *, n_thoughts: int, steps: int = 60,
               prompts_per_step: int = 8, group_size: int = 8, learning_rate: float = 3e-4,
               temperature: float = 1.0, seed: int = 0, progress=None) -> list[GRPOStepResult]:
    """``steps`` GRPO steps on training problems of ``writers`` (never the held-out ones),
    ``prompts_per_step`` problems a step, tasks taking turns. Returns each step's result."""
    import torch

    from .coconut import training_problems

    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0,
                                  betas=(0.9, 0.99))
    pool = training_problems(writers, steps * prompts_per_step, rng)
    bar = range(steps) if progress is None else progress(range(steps), desc="GRPO", leave=False)
    return [grpo_step(model, optimizer, tokenizer,
                      pool[i * prompts_per_step:(i + 1) * prompts_per_step],
                      n_thoughts=n_thoughts, group_size=group_size, temperature=temperature,
                      generator=generator) for i in bar]
