"""The default `train` on the tiny model, over several seeds, plus the tiny model's build time.

What it measures (the issue's targets in brackets):
- the time to build the tiny model from scratch in an empty cache [<= 2 minutes on 2 cores];
- for each seed, `python -m workbench train --out DIR --seed S` exactly as the README runs it:
  held-out greedy accuracy before and after [rise >= 40 points], training seconds [<= 3 minutes],
  mean step seconds.

Run (about 10 minutes on an idle 2-core machine):

    .venv/bin/python benchmarks/train_seeds.py --seeds 0 1 2 --out benchmarks/results/train_seeds.json

Each command runs in its own process, one after another, so nothing competes for the two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_time(cache: Path) -> dict:
    code = ("import time, json; from workbench.tiny import ensure_tiny_model; t=time.time(); "
            "p=ensure_tiny_model(verbose=False); "
            "print(json.dumps({'seconds': time.time()-t, **json.load(open(p/'build_info.json'))}))")
    env = dict(os.environ, WB_CACHE=str(cache))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    return {"seconds": round(info["seconds"], 1), "parameters": info["parameters"],
            "pretrain_steps": info["pretrain_steps"], "pretrain_loss_last": info["pretrain_loss_last"]}


def train_once(seed: int, cache: Path, runs: Path, extra: list[str]) -> dict:
    out = runs / f"seed-{seed}"
    env = dict(os.environ, WB_CACHE=str(cache), PYTHONUNBUFFERED="1")
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "workbench", "train", "--out", str(out), "--seed",
                    str(seed), "--overwrite", *extra], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_seconds"] = round(time.time() - t0, 1)
    summary["gain_points"] = round(100 * (summary["accuracy_after"] - summary["accuracy_before"]), 1)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_seeds.json"))
    p.add_argument("--keep-runs", default=None, help="folder to keep the run folders in")
    p.add_argument("--no-build", action="store_true",
                   help="skip timing a from-scratch build; use the model in $WB_CACHE")
    p.add_argument("extra", nargs="*", help="extra arguments for `workbench train`")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.keep_runs) if args.keep_runs else Path(tmp) / "runs"
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                  "load_before": os.getloadavg(), "runs": []}
        if args.no_build:
            from workbench.tiny import cache_root

            cache = cache_root()
        else:
            cache = Path(tmp) / "cache"
            result["build"] = build_time(cache)
            print(f"tiny model built in {result['build']['seconds']}s "
                  f"({result['build']['parameters']:,} parameters)")
        for seed in args.seeds:
            r = train_once(seed, cache, runs, args.extra)
            result["runs"].append(r)
            print(f"seed {seed}: accuracy {r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f} "
                  f"(+{r['gain_points']} points) in {r['training_seconds']:.0f}s of training, "
                  f"{r['mean_step_seconds']:.2f}s/step, {r['wall_seconds']:.0f}s wall")
        result["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
