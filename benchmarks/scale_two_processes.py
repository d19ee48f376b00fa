"""TRL's GRPOTrainer on one process vs two (torchrun, gloo) on this CPU machine, same task.

    python benchmarks/scale_two_processes.py                 # 10 steps each
    python benchmarks/scale_two_processes.py --steps 4       # a quick look

Both runs are ``python -m workbench trl-train`` on the tiny model and the ``sum`` task with the
same settings (8 prompts x 8 completions per optimiser step in all, 32 new tokens, one torch
thread per process); the second under ``torchrun --nproc_per_node 2``, where each process
generates and trains on half of the completions and DDP averages the gradients.

What it shows: the distributed path works on any machine (the same command that runs under
``accelerate launch`` on 8 GPUs), and the two processes end with bit-identical weights (SHA-256
of every parameter, gathered from each rank). What it does not show: a speed-up. On a shared
2-core machine two processes compete for the same cores; the time per step is reported with the
load average so it can be read as what it is.

Writes ``benchmarks/results/scale_two_processes.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def run(processes: int, out: Path, steps: int, seed: int) -> dict:
    args = ["-m", "workbench", "trl-train", "--out", str(out), "--steps", str(steps),
            "--group-size", "8", "--prompts-per-step", "8", "--max-new-tokens", "32",
            "--eval-examples", "1", "--threads", "1", "--seed", str(seed)]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable])
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(launcher + args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"processes": processes, "command": " ".join(launcher[1:] + args),
            "wall_seconds": round(wall, 1), "load1_before": load,
            "load1_after": os.getloadavg()[0],
            "mean_step_seconds": summary["mean_step_seconds"],
            "digests": summary["parameter_digests"],
            "digest_before": summary["parameter_digest_before"],
            "in_sync": len(set(summary["parameter_digests"])) == 1,
            "weights_moved": summary["parameter_digests"][0] != summary["parameter_digest_before"],
            "reward_first": summary["reward_first"], "reward_last": summary["reward_last"],
            "completions_per_step": sum(1 for _ in (out / "traces.jsonl").open()) // len(metrics)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, Path(tmp) / "one", args.steps, args.seed)
        two = run(2, Path(tmp) / "two", args.steps, args.seed)
    res = {"steps": args.steps, "one": one, "two": two,
           "step_time_ratio_two_over_one": two["mean_step_seconds"] / one["mean_step_seconds"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_two_processes.json").write_text(json.dumps(res, indent=1))
    for r in (one, two):
        print(f"{r['processes']} process(es): {r['mean_step_seconds']:.2f} s/step, "
              f"{r['completions_per_step']} completions/step, weights in sync: {r['in_sync']} "
              f"({', '.join(r['digests'])}), moved: {r['weights_moved']}, reward "
              f"{r['reward_first']:.3f} -> {r['reward_last']:.3f}, load {r['load1_before']:.1f}")
    print(f"step time 2 / 1 processes: {res['step_time_ratio_two_over_one']:.2f}")
    return res


if __name__ == "__main__":
    main()
