"""The single-turn sampler as it was before episodes (workbench.rollouts at d69b549), kept
verbatim as the reference that ``sample_group`` -- now the one-turn case of ``sample_episodes``
-- must reproduce token for token and log-prob for log-prob under the same seed."""
from __future__ import annotations

import torch

from workbench.rollouts import _distinct, _eos_ids, render_prompt, sample_token


@torch.no_grad()
def reference_sample_group(model, tokenizer, prompts, *, group_size, max_new_tokens,
                           temperature=1.0, top_p=1.0, batch_size=None, generator=None):
    device = next(model.parameters()).device
    rows = [render_prompt(tokenizer, p) for p in prompts for _ in range(group_size)]
    batch_size = batch_size or len(rows)
    return [_decode_batch(model, tokenizer, rows[i:i + batch_size], max_new_tokens=max_new_tokens,
                          temperature=temperature, top_p=top_p, generator=generator, device=device)
            for i in range(0, len(rows), batch_size)]


def _decode_batch(model, tokenizer, prompts, *, max_new_tokens, temperature, top_p, generator,
                  device):
    from transformers import DynamicCache

    eos = _eos_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    unique, row_of = _distinct(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(unique, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    row_of = torch.tensor(row_of, device=device)
    unique_ids, unique_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    prompt_ids, prompt_mask = unique_ids[row_of], unique_mask[row_of]
    B = prompt_ids.shape[0]
    eos_t = torch.tensor(eos, device=device)
    model.eval()
    cache = DynamicCache()
    positions = (unique_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=unique_ids, attention_mask=unique_mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache.batch_select_indices(row_of)
    logits = out.logits[row_of, -1, :]
    mask, next_pos = prompt_mask, positions[row_of, -1] + 1
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
        if not bool(running.all()):
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
    completion_ids = tokens[:, :steps]
    is_eos = torch.isin(completion_ids, eos_t)
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": (~after_eos).long(), "sample_logps": logps[:, :steps],
            "finished": is_eos.any(dim=1)}
