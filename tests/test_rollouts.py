"""Sampling: our cached decoding loop agrees with transformers' generate, and masks are right."""
from __future__ import annotations

import torch

from workbench.rollouts import sample_group, sample_token
from workbench.tasks import get_task


def _prompts(n=6):
    return list(get_task("sum").test["prompt"][:n])


def test_greedy_matches_transformers_generate(tiny_policy):
    model, tok = tiny_policy.model, tiny_policy.tokenizer
    prompts = _prompts() + [[{"role": "user", "content": "Add: 12+7+1"}]]   # ragged lengths
    ours = sample_group(model, tok, prompts, group_size=1, max_new_tokens=40, temperature=0.0)
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        ref = model.generate(**enc, max_new_tokens=40, do_sample=False)
    ref_texts = tok.batch_decode(ref[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours.texts == ref_texts


def test_groups_are_adjacent_and_masks_stop_at_eos(tiny_policy):
    model, tok = tiny_policy.model, tiny_policy.tokenizer
    gen = torch.Generator().manual_seed(0)
    comps = sample_group(model, tok, _prompts(3), group_size=4, max_new_tokens=48,
                         temperature=1.0, batch_size=5, generator=gen)   # batches split groups
    assert len(comps) == 12 and comps.group_size == 4
    assert comps.prompts[0] == comps.prompts[3] != comps.prompts[4]
    eos = tok.eos_token_id
    for ids, mask, done in zip(comps.completion_ids, comps.completion_mask, comps.finished):
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()
        if done:
            assert ids[n - 1] == eos and (ids[: n - 1] != eos).all()
    assert torch.all(comps.sample_logps[comps.completion_mask == 0] == 0)
    assert (comps.sample_logps[comps.completion_mask == 1] <= 0).all()


def test_sampling_is_reproducible_with_a_generator(tiny_policy):
    model, tok = tiny_policy.model, tiny_policy.tokenizer
    a = sample_group(model, tok, _prompts(2), group_size=3, max_new_tokens=20,
                     generator=torch.Generator().manual_seed(5))
    b = sample_group(model, tok, _prompts(2), group_size=3, max_new_tokens=20,
                     generator=torch.Generator().manual_seed(5))
    assert a.texts == b.texts


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    picks = {int(sample_token(logits, top_p=0.8, generator=gen)[0]) for _ in range(200)}
    assert picks == {0, 1}


def test_siblings_share_one_prefill_and_finished_rows_leave_the_batch(tiny_policy):
    """Greedy siblings (one prefill copied to every row) decode exactly what generate decodes for
    their prompt alone, while rows that finish early leave the batch."""
    model, tok = tiny_policy.model, tiny_policy.tokenizer
    prompts = _prompts(2) + [[{"role": "user", "content": "Add: 12+7+1"}],
                             [{"role": "user", "content": "Solve 3x = 12"}]]
    comps = sample_group(model, tok, prompts, group_size=3, max_new_tokens=40, temperature=0.0)
    for i, p in enumerate(prompts):
        enc = tok(tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                  return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            ref = model.generate(**enc, max_new_tokens=40, do_sample=False)
        text = tok.decode(ref[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        assert comps.texts[3 * i: 3 * i + 3] == [text] * 3
    assert len(set(comps.lengths.tolist())) > 1          # ragged: some rows left early
