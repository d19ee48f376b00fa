"""Sampling groups of completions: the "generation" half of every GRPO step.

``sample_group`` turns ``P`` prompts into ``P * group_size`` completions, siblings adjacent, with a
plain key/value-cached decoding loop: prefill, then one token per forward pass for every sequence
still running. It is the loop ``model.generate`` runs, written out so a learner can read it, with
two savings that matter for GRPO and skip the bookkeeping a tiny model cannot afford:

* siblings share their prompt, so each distinct prompt is prefilled once and its keys/values are
  copied to its ``group_size`` rows (``DynamicCache.batch_select_indices``);
* a row that has sampled EOS leaves the batch, so later tokens are computed only for the rows
  still running (the rest of the batch is not padded along to the longest completion).

Prompts are left-padded so that every sequence's next token sits in the last column; position ids
come from the attention mask so padding does not shift positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Completions:
    """A batch of sampled completions; row ``i`` belongs to prompt ``i // group_size``."""

    prompt_ids: Tensor          # (N, P) left-padded prompt tokens
    prompt_mask: Tensor         # (N, P) 1 for real prompt tokens
    completion_ids: Tensor      # (N, T) right-padded completion tokens (EOS included when sampled)
    completion_mask: Tensor     # (N, T) 1 for completion tokens up to and including EOS
    sample_logps: Tensor        # (N, T) log-prob of each sampled token under the sampling policy
    texts: list[str]            # decoded completions (special tokens removed)
    prompts: list[str]          # templated prompt text, one per row
    group_size: int
    finished: Tensor            # (N,) True when the completion ended with EOS (not truncated)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(dim=1)                  # (N,)

    def __len__(self) -> int:
        return self.completion_ids.shape[0]


def render_prompt(tokenizer, prompt) -> str:
    """A dataset prompt as model input text: chats go through the chat template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def sample_token(logits: Tensor, *, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One token per row from ``logits`` (B, V); returns (token ids (B,), their log-probs (B,)).

    ``temperature`` 0 means greedy. Log-probs are those of the (tempered) sampling distribution,
    which is what the policy-ratio in GRPO compares against.
    """
    if temperature == 0:
        logps = torch.log_softmax(logits.float(), dim=-1)
        ids = logits.argmax(dim=-1)
        return ids, logps.gather(1, ids[:, None]).squeeze(1)
    logps = torch.log_softmax(logits.float() / temperature, dim=-1)     # (B, V)
    probs = logps.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p                 # keep the nucleus
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(1, order, sorted_p)
    ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)   # (B,)
    return ids, logps.gather(1, ids[:, None]).squeeze(1)


@torch.no_grad()
def sample_group(model, tokenizer, prompts: list, *, group_size: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
                 generator: torch.Generator | None = None, device=None) -> Completions:
    """Sample ``group_size`` completions for each prompt (str or chat), in batches.

    Returns ``Completions`` with ``len(prompts) * group_size`` rows, siblings adjacent.
    ``temperature=0`` decodes greedily (then ``group_size`` is usually 1).
    ``batch_size`` caps how many sequences decode together (memory); ``None`` = all at once.
    """
    import time

    t0 = time.perf_counter()
    device = device or next(model.parameters()).device
    texts = [render_prompt(tokenizer, p) for p in prompts]
    rows = [t for t in texts for _ in range(group_size)]               # siblings adjacent
    batch_size = batch_size or len(rows)
    pieces = [_decode_batch(model, tokenizer, rows[i:i + batch_size], max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, generator=generator,
                            device=device)
              for i in range(0, len(rows), batch_size)]
    out = _concat(pieces, tokenizer)
    out.prompts, out.group_size = rows, group_size
    out.seconds = time.perf_counter() - t0
    return out


def _decode_batch(model, tokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float,
                  top_p: float, generator, device) -> dict:
    from transformers import DynamicCache

    eos = _eos_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    # siblings share a prompt: prefill each distinct prompt once, then copy its cache to its rows
    unique, row_of = _distinct(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(unique, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    row_of = torch.tensor(row_of, device=device)                        # (B,) row -> distinct prompt
    unique_ids, unique_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)  # (U, P)
    prompt_ids, prompt_mask = unique_ids[row_of], unique_mask[row_of]   # (B, P)
    B = prompt_ids.shape[0]
    eos_t = torch.tensor(eos, device=device)

    was_training = model.training
    model.eval()
    cache = DynamicCache()
    positions = (unique_mask.cumsum(-1) - 1).clamp(min=0)               # (U, P)
    out = model(input_ids=unique_ids, attention_mask=unique_mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache.batch_select_indices(row_of)                                  # (U, ...) -> (B, ...)
    logits = out.logits[row_of, -1, :]                                  # (B, V)
    mask, next_pos = prompt_mask, positions[row_of, -1] + 1
    # finished rows leave the batch: ``live`` maps the rows still decoding to their output rows
    live = torch.arange(B, device=device)
    tokens = torch.full((B, max_new_tokens), pad, dtype=torch.long, device=device)
    logps = torch.zeros(B, max_new_tokens, device=device)
    steps = 0
    for t in range(max_new_tokens):
        ids, lp = sample_token(logits, temperature=temperature, top_p=top_p, generator=generator)
        tokens[live, t], logps[live, t] = ids, lp
        steps = t + 1
        running = ~torch.isin(ids, eos_t)
        if not bool(running.any()):
            break
        if not bool(running.all()):                                     # drop the finished rows
            keep = running.nonzero().squeeze(1)
            live, ids, mask, next_pos = live[keep], ids[keep], mask[keep], next_pos[keep]
            cache.batch_select_indices(keep)
        if t + 1 == max_new_tokens:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(input_ids=ids[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
    if was_training:
        model.train()
    completion_ids = tokens[:, :steps]                                  # (B, T)
    is_eos = torch.isin(completion_ids, eos_t)
    # mask: tokens up to and including the first EOS
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    completion_mask = (~after_eos).long()
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "sample_logps": logps[:, :steps],
            "finished": is_eos.any(dim=1), "pad": pad}


def _distinct(items: list) -> tuple[list, list[int]]:
    """The distinct items in first-seen order, and for each item the index of its distinct one."""
    index: dict = {}
    row_of = [index.setdefault(x, len(index)) for x in items]
    return list(index), row_of


def _concat(pieces: list[dict], tokenizer) -> Completions:
    pad = pieces[0]["pad"]

    def cat(key: str, left: bool, value) -> Tensor:
        width = max(p[key].shape[1] for p in pieces)
        padded = []
        for p in pieces:
            t = p[key]
            fill = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
            padded.append(torch.cat([fill, t] if left else [t, fill], dim=1))
        return torch.cat(padded, dim=0)

    completion_ids = cat("completion_ids", False, pad)
    completion_mask = cat("completion_mask", False, 0)
    texts = tokenizer.batch_decode(completion_ids.masked_fill(completion_mask == 0, pad),
                                   skip_special_tokens=True)
    return Completions(
        prompt_ids=cat("prompt_ids", True, pad), prompt_mask=cat("prompt_mask", True, 0),
        completion_ids=completion_ids, completion_mask=completion_mask,
        sample_logps=cat("sample_logps", False, 0.0), texts=texts, prompts=[], group_size=1,
        finished=torch.cat([p["finished"] for p in pieces]))


def _eos_ids(tokenizer, model) -> list[int]:
    ids = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    if not ids:
        raise ValueError("the tokenizer has no eos_token: set tokenizer.eos_token so sampling can stop")
    return sorted(ids)
