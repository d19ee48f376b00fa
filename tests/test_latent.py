"""Latent reasoning: the Coconut feedback loop and the recurrent-depth model do what they document.

Small randomly initialised models (no build, a few seconds) check the mechanics exactly. What the
trained models achieve is asserted by notebook 09 (under nbmake) and measured by
benchmarks/latent.py.
"""
from __future__ import annotations

import random

import pytest
import torch

from workbench.latent.coconut import (BOT, EOT, LATENT, CoconutSpec, Worked, answer_with_thoughts,
                                      check_node_names, collate, encode_prompt,
                                      forward_with_thoughts, latent_step, stage_sequence,
                                      training_problems)
from workbench.latent.recurrent import RecurrentDepthLM, sample_iterations


@pytest.fixture(scope="module")
def small_qwen():
    """A random 2-layer Qwen2 with the latent markers in its vocabulary (no training needed)."""
    from transformers import AutoModelForCausalLM

    from workbench.tasks import ReachTask, SumTask
    from workbench.tiny import TinySpec, render_chat, tiny_config, train_tokenizer

    rng = random.Random(0)
    texts = []
    for w in (SumTask(n_terms=4), ReachTask()):
        for _ in range(300):
            p = w.sample_problem(rng)
            texts.append(render_chat(w.row(p)["prompt"], w.solution(p)))
    tok = train_tokenizer(texts, 300)
    tok.add_tokens([BOT, EOT, LATENT], special_tokens=True)
    spec = TinySpec(hidden_size=64, intermediate_size=128, num_layers=2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(spec, tok), dtype=torch.float32).eval()
    return model, tok


def test_latent_step_equals_a_manual_forward_with_the_hidden_state_fed_back(small_qwen):
    model, tok = small_qwen
    ids = torch.tensor([encode_prompt(tok, [{"role": "user", "content": "Add: 1+2+3+4"}])
                        + tok.convert_tokens_to_ids([BOT])])                   # (1, T)
    embeds = model.get_input_embeddings()(ids)                                # (1, T, H)
    with torch.no_grad():
        # by hand, no cache: run, take the last hidden state, append it as an embedding, run again
        h1 = model.model(inputs_embeds=embeds).last_hidden_state[:, -1]        # (1, H)
        h2 = model.model(inputs_embeds=torch.cat([embeds, h1[:, None]], 1)).last_hidden_state[:, -1]
        h3 = model.model(inputs_embeds=torch.cat([embeds, h1[:, None], h2[:, None]], 1)
                         ).last_hidden_state[:, -1]
        # the helper, through the KV cache
        from transformers import DynamicCache

        cache, t = DynamicCache(), ids.shape[1]
        mask = torch.ones(1, t, dtype=torch.long)
        first = model.model(input_ids=ids, attention_mask=mask, past_key_values=cache,
                            use_cache=True).last_hidden_state[:, -1]
        second = latent_step(model, first, cache=cache, attention_mask=torch.ones(1, t + 1),
                             position_ids=torch.tensor([[t]]))
        third = latent_step(model, second, cache=cache, attention_mask=torch.ones(1, t + 2),
                            position_ids=torch.tensor([[t + 1]]))
    assert torch.allclose(first, h1, atol=1e-5)
    assert torch.allclose(second, h2, atol=1e-5)
    assert torch.allclose(third, h3, atol=1e-5)
    # and the batched answer helper feeds back exactly those states
    out = answer_with_thoughts(model, tok, [[{"role": "user", "content": "Add: 1+2+3+4"}]],
                               n_thoughts=2, max_new_tokens=3)[0]
    assert out.n_thoughts == 2 and out.thoughts.shape == (2, h1.shape[-1])
    assert torch.allclose(out.thoughts, torch.cat([h1, h2]), atol=1e-5)


def test_left_padding_does_not_change_a_thought(small_qwen):
    """A batch aligns thoughts by left-padding prompts: each row thinks as if it were alone."""
    model, tok = small_qwen
    short = [{"role": "user", "content": "Add: 1+2+3+4"}]
    long = [{"role": "user", "content": "Edges: a>b b>c c>d d>f\nFrom a: f or g?"}]
    alone = [answer_with_thoughts(model, tok, [p], n_thoughts=3, max_new_tokens=4)[0]
             for p in (short, long)]
    both = answer_with_thoughts(model, tok, [short, long], n_thoughts=3, max_new_tokens=4)
    for a, b in zip(alone, both):
        assert torch.allclose(a.thoughts, b.thoughts, atol=1e-4)
        assert a.text == b.text


def test_curriculum_hides_steps_and_masks_all_but_the_visible_tail(small_qwen):
    model, tok = small_qwen
    ids = dict(zip((BOT, EOT, LATENT), tok.convert_tokens_to_ids([BOT, EOT, LATENT])))
    ex = Worked(prompt=(5, 6, 7), steps=((10, 11), (12, 13), (14,)), answer=(20, 21), gold="x")
    seq, labels = stage_sequence(ex, stage=2, c_thought=2, ids=ids)
    assert seq == [5, 6, 7, ids[BOT]] + [ids[LATENT]] * 4 + [ids[EOT], 14, 20, 21]
    assert labels == [-100] * 9 + [14, 20, 21]
    seq0, labels0 = stage_sequence(ex, stage=0, c_thought=2, ids=ids)
    assert seq0 == [5, 6, 7, ids[BOT], ids[EOT], 10, 11, 12, 13, 14, 20, 21]
    # training forward: the loss sees only the visible tail, and thoughts carry gradient
    other = Worked(prompt=(5, 6), steps=((10,), (12,), (14, 15)), answer=(20,), gold="y")
    pairs = [stage_sequence(e, stage=2, c_thought=1, ids=ids) for e in (ex, other)]
    input_ids, mask, lab, start = collate(pairs, prompt_lens=[3, 2], pad_id=tok.pad_token_id)
    assert (input_ids[:, start:start + 2] == ids[LATENT]).all()
    logits, thoughts = forward_with_thoughts(model, input_ids, mask, latent_start=start, n_latent=2)
    assert logits.shape[1] == input_ids.shape[1] - start - 2 and thoughts.shape[1] == 2
    thoughts.sum().backward()
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_node_names_stay_one_token_at_the_default_vocabulary_only():
    """A larger BPE merges '>' with frequent node letters, so edges tokenise unevenly."""
    from workbench.tiny import render_chat, train_tokenizer

    spec = CoconutSpec()
    drawn = training_problems(spec.writers(), 3000, random.Random(0))
    texts = [render_chat(w.row(p)["prompt"], w.solution(p)) for w, p in drawn]
    check_node_names(train_tokenizer(texts, spec.vocab_size))
    with pytest.raises(ValueError, match="node names merge"):
        check_node_names(train_tokenizer(texts, 320))


@pytest.fixture(scope="module")
def small_recurrent():
    torch.manual_seed(0)
    return RecurrentDepthLM(vocab=50, hidden=32, heads=2, intermediate=64, max_positions=32).eval()


def test_recurrent_one_iteration_is_prelude_core_coda(small_recurrent):
    m = small_recurrent
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        e, allowed = m.read(ids)
        by_hand = m.write(m.think(torch.zeros_like(e), e, allowed), allowed)
        assert torch.allclose(m(ids, iterations=1), by_hand, atol=1e-6)
        deeper = m(ids, iterations=4)
        assert not torch.allclose(deeper, by_hand, atol=1e-3)   # iterations change the answer
    with pytest.raises(ValueError, match="at least one"):
        m(ids, iterations=0)


def test_recurrent_backprop_depth_truncates_gradients_not_values(small_recurrent):
    m = small_recurrent
    ids = torch.randint(0, 50, (2, 9))
    full, cut = m(ids, iterations=6), m(ids, iterations=6, backprop_depth=2)
    assert torch.allclose(full, cut, atol=1e-6)
    cut.sum().backward()
    assert m.adapter.weight.grad is not None
    m.zero_grad(set_to_none=True)


def test_adaptive_exit_limits(small_recurrent):
    m = small_recurrent
    ids = torch.randint(0, 50, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0                                               # a left-padded row
    never = m.forward_adaptive(ids, mask, threshold=0.0, max_iterations=7)
    assert (never.depths == 7).all()
    assert torch.allclose(never.logits, m(ids, mask, iterations=7), atol=1e-5)
    always = m.forward_adaptive(ids, mask, threshold=float("inf"), max_iterations=7)
    assert (always.depths == 2).all()
    assert torch.allclose(always.logits, m(ids, mask, iterations=2), atol=1e-5)
    some = m.forward_adaptive(ids, mask, threshold=1e-3, max_iterations=32)
    assert ((some.depths >= 2) & (some.depths <= 32)).all()


def test_training_depths_follow_the_log_normal_poisson():
    rng = random.Random(0)
    draws = [sample_iterations(rng, mean=4.0, cap=16) for _ in range(4000)]
    assert min(draws) >= 1 and max(draws) <= 16
    assert 4.0 < sum(draws) / len(draws) < 5.5                    # Poisson(mean) + 1



def test_recurrent_build_reads_its_input(tmp_path):
    """A short real build on sums must beat the best input-blind answer: the answer's negative
    log-likelihood on held-out sums below the entropy of the answers' marginal. Last round's
    model (tokens read at std 0.02 into a sandwich-normed stream) sat at that floor and gave
    every sum the same answer at every depth."""
    import math
    from collections import Counter

    from workbench.latent.coconut import encode_prompt
    from workbench.latent.recurrent import RecurrentSpec, build_recurrent_model, load_folder

    spec = RecurrentSpec(tasks=("sum",), hidden_size=48, intermediate_size=128, train_steps=150,
                         corpus_size=2000, mean_iterations=2.0, max_iterations=4)
    build_recurrent_model(tmp_path, spec, verbose=False)
    model, tok = load_folder(tmp_path)
    writer = spec.writers()[0]
    held_out = writer.split(0, 100)[1]
    rng = random.Random(1)
    counts = Counter(writer.gold(writer.sample_problem(rng)) for _ in range(5000))
    floor = -sum(c / 5000 * math.log(c / 5000) for c in counts.values())     # nats per answer
    nll = []
    with torch.no_grad():
        for p in held_out:
            prompt = encode_prompt(tok, writer.row(p)["prompt"]) + tok("<answer>")["input_ids"]
            answer = tok(writer.gold(p))["input_ids"]                           # its digits
            ids = torch.tensor([prompt + answer])                               # (1, T)
            logp = model(ids, iterations=2)[0, len(prompt) - 1:-1].log_softmax(-1)
            nll.append(-logp.gather(1, torch.tensor(answer)[:, None]).sum().item())
    # about 2.9 nats; last round's model 2.98, this one 2.49
    assert sum(nll) / len(nll) < floor - 0.2, (sum(nll) / len(nll), floor)


def test_grpo_scores_the_sampled_tokens_after_the_same_thoughts(small_qwen):
    """completion_logps (what GRPO differentiates) equals a by-hand forward: prompt, <bot>, the
    fed-back states, <eot>, the sampled completion -- for rows of different prompt lengths."""
    from workbench.latent.thought_grpo import completion_logps

    model, tok = small_qwen
    chats = [[{"role": "user", "content": "Add: 1+2+3+4"}],
             [{"role": "user", "content": "Edges: a>b b>c c>d\nFrom a: d or g?"}]]
    answers = answer_with_thoughts(model, tok, chats, n_thoughts=2, max_new_tokens=5,
                                   temperature=1.0, generator=torch.Generator().manual_seed(0))
    prompts = [encode_prompt(tok, c) for c in chats]
    with torch.no_grad():
        logps, mask = completion_logps(model, tok, prompts, [list(a.token_ids) for a in answers],
                                       n_thoughts=2)                    # (2, T)
    embed = model.get_input_embeddings()
    bot, eot = tok.convert_tokens_to_ids([BOT, EOT])
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        with torch.no_grad():
            x = embed(torch.tensor([prompt + [bot]]))                   # (1, P + 1, H)
            for _ in range(2):                                          # two thoughts, by hand
                x = torch.cat([x, model.model(inputs_embeds=x).last_hidden_state[:, -1:]], 1)
            tail = torch.tensor([[eot, *answer.token_ids]])
            x = torch.cat([x, embed(tail)], 1)
            logits = model.lm_head(model.model(inputs_embeds=x).last_hidden_state)
            n = len(answer.token_ids)
            want = logits[0, -n - 1:-1].log_softmax(-1).gather(1, tail[0, 1:, None])[:, 0]
        assert mask[row].sum() == n and torch.allclose(logps[row, :n], want, atol=1e-4)
