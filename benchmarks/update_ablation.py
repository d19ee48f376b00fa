"""What each saving in the update costs or saves: our GRPO step with each one turned off.

    python benchmarks/update_ablation.py                 # 12 steps per variant, 1 torch thread

Variants: ``full`` (the engine as it is), ``no-pieces`` (each micro-batch forwarded in one piece,
padded to its longest completion), ``no-shared-prompts`` (every row forwards its prompt again).
All three start from the same weights and seed, so they sample the same completions and take the
same steps (the loss column shows it); only the update's seconds differ. The first 2 steps are left
out of the means. Writes ``benchmarks/results/update_ablation.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(variant: str, steps: int, threads: int) -> dict:
    import torch

    import workbench.trainer as tr
    from workbench.settings import GRPOSettings, TrainSettings

    settings = TrainSettings(grpo=GRPOSettings(), steps=steps, seed=0, device="cpu", threads=threads)
    trainer = tr.GRPOTrainer(settings, out=None, verbose=False)
    original = tr.length_pieces
    if variant == "no-pieces":
        tr.length_pieces = lambda lengths, **k: [torch.arange(len(lengths))]
    if variant == "no-shared-prompts":
        trainer._share_prompts = lambda model: False
    try:
        metrics = [trainer.step() for _ in range(steps)][2:]
    finally:
        tr.length_pieces = original
    return {"variant": variant,
            "training_seconds_mean": statistics.fmean(m["training_seconds"] for m in metrics),
            "generation_seconds_mean": statistics.fmean(m["generation_seconds"] for m in metrics),
            "losses": [round(m["loss"], 6) for m in metrics]}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "update_ablation.json")
    args = p.parse_args(argv)
    rows = [run(v, args.steps, args.threads) for v in ("full", "no-pieces", "no-shared-prompts")]
    base = rows[0]["training_seconds_mean"]
    print("| variant | update s (mean) | vs full | first losses |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['training_seconds_mean']:.3f} | "
              f"{r['training_seconds_mean'] / base:.2f}x | {r['losses'][:3]} |")
    args.out.write_text(json.dumps({"command": "python benchmarks/update_ablation.py "
                                     + " ".join(argv or sys.argv[1:]), "threads": args.threads,
                                     "load1": os.getloadavg()[0], "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
