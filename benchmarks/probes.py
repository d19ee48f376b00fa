"""Faithfulness probes before/after GRPO, and the language-drift arms, over seeds.

    .venv/bin/python benchmarks/probes.py                      # 3 seeds, the numbers in README
    .venv/bin/python benchmarks/probes.py --seeds 0 --steps 60 --drift-steps 60   # quicker

Part 1, for each seed: a fresh tiny model (task ``sum``), the four probes of
``workbench.probes.run_probes`` on ``--n`` held-out problems, GRPO for ``--steps`` steps (the
library's default settings, this seed), the four probes again.
Part 2, for each seed: GRPO on the two-language tiny model (``sum_bilingual``) for
``--drift-steps`` steps with the language-consistency reward at weight 0 (measured only) and 1
(DeepSeek-R1: summed with the accuracy reward).

Writes ``benchmarks/results/probes.json`` (every number, the per-step drift curves, the load)
and prints the markdown tables of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROBE_NUMBERS = {
    "early_answering": ("aoc", "match_at_0", "accuracy", "traces"),
    "adding_mistake": ("changed", "followed", "aoc", "traces"),
    "filler_tokens": ("accuracy_trace", "accuracy_none", "accuracy_filler", "filler_gain"),
    "biased_hint": ("switch_rate", "verbalised", "accuracy_plain", "accuracy_hinted"),
}


def probe_part(seeds, steps: int, n: int, threads: int) -> list[dict]:
    from workbench.models import load_policy
    from workbench.probes import run_probes
    from workbench.settings import TrainSettings
    from workbench.tasks import get_task
    from workbench.trainer import GRPOTrainer

    out = []
    task = get_task("sum")
    for seed in seeds:
        t0 = time.time()
        policy = load_policy(task="sum", verbose=False)
        before = run_probes(policy, task, n=n, seed=seed)
        settings = replace(TrainSettings(), steps=steps, seed=seed, threads=threads)
        summary = GRPOTrainer(settings, None, policy=policy, task=task, verbose=False).train(
            progress=False)
        after = run_probes(policy, task, n=n, seed=seed)
        row = {"seed": seed, "accuracy_before": summary["accuracy_before"],
               "accuracy_after": summary["accuracy_after"], "seconds": round(time.time() - t0),
               "before": {k: r.numbers for k, r in before.items()},
               "after": {k: r.numbers for k, r in after.items()}}
        print(f"seed {seed}: {json.dumps(row)}", flush=True)
        out.append(row)
    return out


def drift_part(seeds, steps: int, threads: int, n_eval: int, n: int,
               weights=(0.0, 1.0)) -> list[dict]:
    from workbench.models import load_policy
    from workbench.probes import language_drift, run_probes
    from workbench.settings import TrainSettings
    from workbench.tasks import get_task

    out = []
    task = get_task("sum_bilingual")
    for seed in seeds:
        for weight in weights:
            t0 = time.time()
            policy = load_policy(task="sum_bilingual", verbose=False)
            before = run_probes(policy, task, n=n, seed=seed)
            arm = language_drift(language_weight=weight, seed=seed, steps=steps, n_eval=n_eval,
                                 settings=replace(TrainSettings(), threads=threads),
                                 policy=policy, progress=False)
            after = run_probes(policy, task, n=n, seed=seed)
            row = arm.summary() | {"language_weight": weight,
                                   "seconds": round(time.time() - t0),
                                   "before": {k: r.numbers for k, r in before.items()},
                                   "after": {k: r.numbers for k, r in after.items()},
                                   "history": list(arm.history)}
            print(f"drift {arm.name} seed {seed}: "
                  f"{json.dumps({k: v for k, v in row.items() if k != 'history'})}", flush=True)
            out.append(row)
    return out


def _spread(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    return f"{mean:.2f} ({min(values):.2f}–{max(values):.2f})"


def markdown(result: dict) -> str:
    lines = []
    probes = result.get("probes") or []
    if probes:
        lines += ["| probe | number | before GRPO | after GRPO |", "|---|---|---|---|"]
        lines.append(f"| (held-out greedy accuracy) | | "
                     f"{_spread([r['accuracy_before'] for r in probes])} | "
                     f"{_spread([r['accuracy_after'] for r in probes])} |")
        for probe, names in PROBE_NUMBERS.items():
            for name in names:
                lines.append(f"| {probe} | {name} | "
                             f"{_spread([r['before'][probe][name] for r in probes])} | "
                             f"{_spread([r['after'][probe][name] for r in probes])} |")
        lines.append("")
    drift = result.get("drift") or []
    if drift:
        only = [r for r in drift if r["arm"] == "accuracy only"]
        lang = [r for r in drift if r["arm"] != "accuracy only"]
        lines += ["| probe (two-language model) | number | before GRPO | after, accuracy only "
                  "| after, accuracy + language |", "|---|---|---|---|---|"]
        for probe, names in PROBE_NUMBERS.items():
            for name in names:
                cells = [_spread([r[when][probe][name] for r in rows])
                         for when, rows in (("before", only), ("after", only), ("after", lang))]
                lines.append(f"| {probe} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += ["| arm | held-out accuracy before → after | held-out en share before → after "
                  "| training en share, last 10 steps | training accuracy, last 10 steps |",
                  "|---|---|---|---|---|"]
        for arm in ("accuracy only", "accuracy + language"):
            rows = [r for r in drift if r["arm"] == arm]
            lines.append(
                f"| {arm} | {_spread([r['accuracy_before'] for r in rows])} → "
                f"{_spread([r['accuracy_after'] for r in rows])} | "
                f"{_spread([r['share_before'] for r in rows])} → "
                f"{_spread([r['share_after'] for r in rows])} | "
                f"{_spread([r['train_share_last'] for r in rows])} | "
                f"{_spread([r['train_accuracy_last'] for r in rows])} |")
    lines.append("")
    lines.append("Mean over seeds, (min–max) in brackets.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=150, help="GRPO steps on sum (probe part)")
    p.add_argument("--drift-steps", type=int, default=150, help="GRPO steps per drift arm")
    p.add_argument("--n", type=int, default=64, help="held-out problems per probe")
    p.add_argument("--n-eval", type=int, default=200, help="held-out problems per drift eval")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0],
                   help="language-reward weights of the drift arms")
    p.add_argument("--skip", choices=("probes", "drift"), default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "probes.json"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    load = os.getloadavg()[0]
    result = {"command": " ".join(["benchmarks/probes.py", *(argv or sys.argv[1:])]),
              "seeds": args.seeds, "steps": args.steps, "drift_steps": args.drift_steps,
              "n": args.n, "threads": args.threads, "load_at_start": round(load, 2)}
    if args.skip != "probes":
        result["probes"] = probe_part(args.seeds, args.steps, args.n, args.threads)
    if args.skip != "drift":
        result["drift"] = drift_part(args.seeds, args.drift_steps, args.threads, args.n_eval,
                                     args.n, args.weights)
    result["seconds"] = round(time.time() - t0)
    result["load_at_end"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(markdown(result))
    print(f"\n{result['seconds']} s; load {result['load_at_start']} -> {result['load_at_end']}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
