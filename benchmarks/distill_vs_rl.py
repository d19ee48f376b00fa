"""Distillation vs RL-zero vs SFT->RL on the tiny default, over seeds (issue 13).

Each arm starts from the same base tiny model and spends the same budget in tokens (generated +
trained; the teacher's tokens reported apart); see ``workbench.distill`` for what is held fixed.
Writes the per-seed and mean table, every pass@k curve, and a plot.

Run (about 5 minutes of CPU on 1 thread; 3 seeds):

    .venv/bin/python benchmarks/distill_vs_rl.py --seeds 0 1 2 \
        --out benchmarks/results/distill_vs_rl.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=40_000, help="tokens per arm")
    ap.add_argument("--eval-examples", type=int, default=200)
    ap.add_argument("--pass-problems", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/distill_vs_rl.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from workbench.distill import (ArmsSettings, arms_table, compare_arms, markdown_table,
                                   plot_arms)

    a = ArmsSettings(budget_tokens=args.budget, eval_examples=args.eval_examples,
                     pass_problems=args.pass_problems)
    t0, c0, load0 = time.time(), time.process_time(), os.getloadavg()[0]
    results = compare_arms(a, seeds=tuple(args.seeds))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = arms_table(results)
    out.write_text(json.dumps({
        "command": " ".join(["benchmarks/distill_vs_rl.py", *sys.argv[1:]]),
        "settings": {"budget_tokens": a.budget_tokens, "few_traces": a.few_traces,
                     "few_steps": a.few_steps, "ood_knobs": a.ood_knobs,
                     "eval_examples": a.eval_examples, "pass_n": a.pass_n,
                     "pass_problems": a.pass_problems, "temperature": a.temperature},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "load_start": load0,
                    "load_end": os.getloadavg()[0]},
        "wall_seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
        "table": table,
        "results": [asdict(r) for r in results],
    }, indent=1))
    fig = plot_arms(results)
    fig.savefig(out.with_suffix(".png"), dpi=80)
    print(markdown_table(table))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
