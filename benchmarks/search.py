"""Search agents on the generated world: BM25 speed, episode throughput, and what RL changes.

Three parts (``--parts``):

* ``bm25``: queries per second of ``SearchIndex`` (bm25s) on the world's 420 documents, one
  query at a time as an episode makes them and all at once, beside a plain-Python scan of the
  same documents (word overlap, no idf) for scale;
* ``throughput``: the tiny search model's episodes per second and model tokens per second,
  side by side in one process, with the search tool on vs off (every call "no results");
* ``rl``: per seed, GRPO on the search task (``python -m workbench train --task search``'s
  trainer) with environment tokens masked (Search-R1) and unmasked (the ablation), then
  greedy held-out accuracy with the tool vs without it, and search calls per question by the
  number of look-ups it needs (``search_report``).

Run (load permitting; the ``rl`` part is about 4 minutes per seed and mask on an idle 2-core
machine at the default 60 steps):

    .venv/bin/python benchmarks/search.py --seeds 0 1 2 --out benchmarks/results/search.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bm25_speed(queries: int = 2000) -> dict:
    from workbench.envs.search import make_world, world_index

    world, index = make_world(), world_index()
    names = [p.name for p in world.people] + [c.name for c in world.companies]
    qs = [f"{names[i % len(names)]} born" for i in range(queries)]
    docs = [set(d.lower().replace(".", " ").replace(":", " ").split()) for d in world.documents]

    def scan(q: str) -> list[int]:
        words = set(q.lower().split())
        scores = [len(words & d) for d in docs]
        return sorted(range(len(docs)), key=lambda i: -scores[i])[:2]

    out = {"documents": len(world.documents), "queries": queries}
    for name, fn in (("bm25s", lambda q: index.search(q, 2)), ("python_scan", scan)):
        t0 = time.perf_counter()
        for q in qs:
            fn(q)
        out[f"{name}_queries_per_second"] = round(queries / (time.perf_counter() - t0), 1)
    t0 = time.perf_counter()                  # all queries in one call (no per-call cost)
    index._bm25.retrieve([q.lower().split() for q in qs], k=2, show_progress=False,
                         n_threads=1)
    out["bm25s_batched_queries_per_second"] = round(queries / (time.perf_counter() - t0), 1)
    out["bm25s_vs_scan"] = round(out["bm25s_queries_per_second"]
                                 / out["python_scan_queries_per_second"], 2)
    return out


def throughput(policy, task, *, rows: int = 64, group_size: int = 4, repeats: int = 2) -> dict:
    """Episodes/s with the tool on vs off, alternating runs in one process (load hits both)."""
    from functools import partial

    import torch

    from workbench.envs.search import EPISODE_TOKENS, SearchEnv
    from workbench.rollouts import sample_episodes

    data = [task.test[i] for i in range(rows)]
    res = {True: [], False: []}
    for r in range(repeats):
        for tools in (True, False):
            comps = sample_episodes(policy.model, policy.tokenizer, data,
                                    env=partial(SearchEnv, tools=tools), group_size=group_size,
                                    max_new_tokens=24, max_episode_tokens=EPISODE_TOKENS,
                                    generator=torch.Generator().manual_seed(r))
            res[tools].append((len(comps) / comps.seconds, float(comps.action_mask.sum())
                               / comps.seconds, float(comps.lengths.float().mean()),
                               comps.env_seconds / comps.seconds))
    best = {k: max(v) for k, v in res.items()}
    return {"episodes": rows * group_size,
            "tools_episodes_per_second": round(best[True][0], 2),
            "no_tools_episodes_per_second": round(best[False][0], 2),
            "tools_model_tokens_per_second": round(best[True][1], 1),
            "no_tools_model_tokens_per_second": round(best[False][1], 1),
            "tools_tokens_per_episode": round(best[True][2], 1),
            "no_tools_tokens_per_episode": round(best[False][2], 1),
            "tools_env_time_share": round(best[True][3], 4),
            "ratio_tools_vs_no_tools": round(best[True][0] / best[False][0], 3)}


def rl_run(seed: int, *, masked: bool, steps: int, threads: int, n_eval: int) -> dict:
    import torch

    from workbench.envs.search import EPISODE_TOKENS, search_report
    from workbench.settings import GRPOSettings, TaskSettings, TrainSettings
    from workbench.trainer import GRPOTrainer

    torch.set_num_threads(threads)
    g = replace(GRPOSettings(), max_new_tokens=24, max_episode_tokens=EPISODE_TOKENS,
                mask_environment_tokens=masked)
    s = TrainSettings(task=TaskSettings(name="search"), grpo=g, steps=steps, seed=seed,
                      threads=threads, eval_examples=n_eval, eval_every=0)
    trainer = GRPOTrainer(s, verbose=False)

    def report(tools: bool) -> dict:
        return asdict(search_report(trainer.policy, trainer.task, n=n_eval, tools=tools))

    t0 = time.time()
    before = {"tools": report(True), "no_tools": report(False)}
    summary = trainer.train(progress=False)
    after = {"tools": report(True), "no_tools": report(False)}
    seconds = round(time.time() - t0, 1)
    # the trained model searches where the base model answered at once: throughput again
    return {"seed": seed, "masked": masked, "before": before, "after": after,
            "summary": summary, "seconds": seconds,
            "throughput_after": throughput(trainer.policy, trainer.task, rows=32, repeats=1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=["bm25", "throughput", "rl"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--eval", type=int, default=200, help="held-out questions per report")
    p.add_argument("--masks", nargs="+", default=["on", "off"], choices=["on", "off"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search.json"))
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                  load_before=os.getloadavg()[0])
    if "bm25" in args.parts:
        result["bm25"] = bm25_speed()
        print(json.dumps(result["bm25"]), flush=True)
    if "throughput" in args.parts:
        import torch

        from workbench.models import load_policy
        from workbench.tasks import get_task

        torch.set_num_threads(args.threads)
        policy = load_policy(task="search", verbose=True)
        result["throughput"] = throughput(policy, get_task("search", n_train=10))
        print(json.dumps(result["throughput"]), flush=True)
    if "rl" in args.parts:
        runs = [r for r in result.get("rl", []) if (r["seed"], r["masked"]) not in
                {(s, m == "on") for s in args.seeds for m in args.masks}]
        for seed in args.seeds:
            for m in args.masks:
                r = rl_run(seed, masked=m == "on", steps=args.steps, threads=args.threads,
                           n_eval=args.eval)
                runs.append(r)
                a, b = r["after"], r["before"]
                print(f"seed {seed} mask {m}: tools {b['tools']['overall']:.3f} -> "
                      f"{a['tools']['overall']:.3f}, no tools {a['no_tools']['overall']:.3f}; "
                      f"searches by hops {a['tools']['searches']} ({r['seconds']:.0f} s)",
                      flush=True)
                result["rl"] = runs
                out.write_text(json.dumps(result, indent=1, default=str))
    result["load_after"] = os.getloadavg()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
