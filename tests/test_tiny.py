"""The embedded tiny model: a real transformers model that reloads identically and has headroom."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.tiny import TinySpec, corpus_examples, render_chat


def test_reloads_with_from_pretrained(tiny_path):
    tok = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    assert model.config.model_type == "qwen2"
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 10_000_000
    info = json.loads((tiny_path / "build_info.json").read_text())
    assert info["parameters"] == n
    assert info["pretrain_loss_last"] < info["pretrain_loss_first"] / 3


def test_tokenizer_round_trips_and_splits_digits(tiny_path):
    tok = AutoTokenizer.from_pretrained(tiny_path)
    for text in ["Add: 12+7+1", "9+8=17\n<answer>17</answer>", "x=-3/4", "Solve: 3x+2=7"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    digits = tok("12345", add_special_tokens=False)["input_ids"]
    assert len(digits) == 5, "digits must be one token each (Qwen2 pre-tokenisation)"


def test_chat_template_matches_the_corpus(tiny_path):
    tok = AutoTokenizer.from_pretrained(tiny_path)
    chat = [{"role": "user", "content": "Add: 1+2+3+4"}]
    templated = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert render_chat(chat, "10").startswith(templated)
    assert tok.eos_token == "<|im_end|>"


def test_corpus_never_contains_held_out_problems():
    from workbench.tasks import get_task

    spec = TinySpec()
    held_out = set(get_task("sum", n_train=10).test["question"])
    corpus = corpus_examples(TinySpec(corpus_size=3000, seed=spec.seed))
    assert not {p[0]["content"] for p, _ in corpus} & held_out


@pytest.mark.slow
def test_base_model_has_headroom_for_rl(tiny_policy):
    """Held-out greedy accuracy in the 5-40% band the course relies on, and worked solutions
    (sampled) are far more often right than estimates: the signal RL can amplify."""
    from workbench.rollouts import sample_group
    from workbench.tasks import answer_reward, get_task
    from workbench.trainer import evaluate_policy

    task = get_task("sum")
    acc = evaluate_policy(tiny_policy, task, n=200, max_new_tokens=48)["accuracy"]
    assert 0.05 <= acc <= 0.40, acc
    rows = task.test.select(range(40))
    comps = sample_group(tiny_policy.model, tiny_policy.tokenizer, list(rows["prompt"]),
                         group_size=8, max_new_tokens=48,
                         generator=torch.Generator().manual_seed(0))
    gold = [a for a in rows["answer"] for _ in range(8)]
    right = answer_reward(None, comps.texts, gold)
    worked = ["\n" in t.strip() for t in comps.texts]
    acc_worked = sum(r for r, w in zip(right, worked) if w) / max(1, sum(worked))
    acc_direct = sum(r for r, w in zip(right, worked) if not w) / max(1, len(worked) - sum(worked))
    assert sum(worked) > 0.15 * len(worked)
    assert acc_worked > acc_direct + 0.3, (acc_worked, acc_direct)


def test_a_killed_build_leaves_nothing_that_outlives_the_next_one(tmp_path):
    """A build killed mid-way leaves its temporary folder; the next build of that model (holding
    the lock, so no other build is live) removes it, and readers only ever see whole folders."""
    from workbench.tiny import cached_build

    path = tmp_path / "tiny-0123456789ab"
    stale = tmp_path / ".tiny-0123456789ab-x1y2z3"      # what SIGKILL during a build leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    other = tmp_path / ".tiny-0123456789abcd-q"           # another model's: not touched
    other.mkdir()

    def build(out):
        (out / "build_info.json").write_text("{}")

    assert cached_build(path, build) == path and (path / "build_info.json").exists()
    assert not stale.exists() and other.exists()
    assert cached_build(path, lambda out: pytest.fail("built twice")) == path


def test_build_command_finds_cached_models_and_refuses_unknown_ones(tiny_path, capsys):
    from workbench.__main__ import main

    assert main(["build", "--task", "sum"]) == 0
    out = capsys.readouterr().out
    assert "tiny model: sum" in out and "cached" in out and str(tiny_path) in out
    assert main(["build", "--task", "sum", "chess"]) == 2
    err = capsys.readouterr().err
    assert "--task chess: no such synthetic task" in err and err.count("\n") == 1
    assert main(["build", "--threads", "0"]) == 2
