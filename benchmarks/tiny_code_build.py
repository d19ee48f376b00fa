"""Build cost of the tiny code model's spec, relative to the default tiny model, in one process.

What it measures (the brief's method, so a loaded machine still gives a usable ratio):
``time.process_time`` per pretraining step of ``TASK_SPECS["code"]`` (or variants given as
``field=value`` overrides) against a default ``TinySpec()`` step, both on their own corpus and
tokenizer, ``--steps`` steps each. The build estimate scales the default build's CI time
(``--default-seconds``, 132 s on a quiet 2-core CI machine) by
(code steps x code step) / (500 x default step). The corpus's sandboxed repair runs happen in the
sandbox's processes, so they are reported as wall seconds apart from that estimate.

Run:

    .venv/bin/python benchmarks/tiny_code_build.py
    .venv/bin/python benchmarks/tiny_code_build.py "pretrain_steps=300, batch_size=24"
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_cost(spec, steps: int) -> dict:
    """Corpus wall seconds, mean token length, and process seconds per pretraining step."""
    from transformers import AutoModelForCausalLM

    from workbench.tiny import (corpus_examples, encode_corpus, pretrain, render_chat, tiny_config,
                                train_tokenizer)

    w0 = time.time()
    examples = corpus_examples(spec)
    texts = [render_chat(p, c) for p, c in examples]
    tok = train_tokenizer(texts, spec.vocab_size)
    corpus_wall = time.time() - w0
    ids, labels = encode_corpus(tok, examples, texts)
    model = AutoModelForCausalLM.from_config(tiny_config(spec, tok))
    c0 = time.process_time()
    pretrain(model, ids, labels, dataclasses.replace(spec, pretrain_steps=steps),
             pad_id=tok.pad_token_id, verbose=False)
    return {"step": (time.process_time() - c0) / steps, "corpus_wall": corpus_wall,
            "mean_tokens": sum(map(len, ids)) / len(ids)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="*", help='overrides of TASK_SPECS["code"], e.g. '
                   '"pretrain_steps=300, batch_size=24"')
    p.add_argument("--steps", type=int, default=12, help="pretraining steps timed per spec")
    p.add_argument("--default-seconds", type=float, default=132.0)
    args = p.parse_args()
    import torch

    from workbench.tiny import TASK_SPECS, TinySpec

    torch.set_num_threads(1)
    base = step_cost(TinySpec(), args.steps)
    specs = {"TASK_SPECS['code']": TASK_SPECS["code"]}
    for v in args.variants:
        specs[v] = eval(f"dataclasses.replace(TASK_SPECS['code'], {v})")   # noqa: S307 (CLI)
    print(f"load average {os.getloadavg()[0]:.1f}; default step {base['step']:.3f} s process "
          f"time, {base['mean_tokens']:.0f} tokens per example")
    for name, spec in specs.items():
        c = step_cost(spec, args.steps)
        rel = spec.pretrain_steps * c["step"] / (TinySpec().pretrain_steps * base["step"])
        print(f"{name}: step {c['step'] / base['step']:.2f}x a default step, "
              f"{c['mean_tokens']:.0f} tokens per example; pretraining ~{rel:.2f}x the default "
              f"build = ~{rel * args.default_seconds:.0f} s on quiet CI, plus the corpus "
              f"({c['corpus_wall']:.0f} s wall here, sandboxed repairs included)", flush=True)


if __name__ == "__main__":
    main()
