"""Episode sampling vs single-turn sampling: model tokens per second, same model, same budget.

    python benchmarks/episodes.py                 # 7 interleaved rounds, 2 threads
    python benchmarks/episodes.py --rounds 12 --threads 1 --episodes-vs 3659f02
                                                  # shared machine; + that commit's samplers
    python benchmarks/episodes.py --engine-vs d69b549 --steps 30   # single-turn GRPO steps:
                                                  # this engine vs the one before episodes

What is held equal: the embedded tiny model, the ``sum`` task's first training prompts (8 prompts
x 8 = 64 sequences sampled together), temperature 1.0, and the model-token budget: single-turn
completions get ``turns * per_turn`` new tokens (48), episodes ``turns`` turns of ``per_turn``
(3 x 16). The environment (``Again``) is deterministic and instant: it answers "again" after every
turn, so every episode that does not run out of tokens takes all its turns and the reply (a
ChatML user message, 14 tokens of the tiny vocabulary) enters the context between them.

Measured per round, interleaved (the order rotating) so all see the same load: the seconds (wall
and CPU) of ``sample_group`` (single-turn) and of ``sample_episodes`` (multi-turn) three ways:
as shipped (KV cache kept, rows rejoin the running batch as their replies come: continuous
batching); turn by turn (``_rejoin_now`` off: every turn waits for its slowest row, the engine
before continuous batching); and with every later turn prefilled again (the fallback for caches
that cannot be set aside, which is turn by turn too). Rate = tokens the model sampled / seconds (environment tokens
are not counted as generated; the multi-turn rate counts its environment seconds too, ~0 here).
Reported: the median of the per-round ratios, and the model's forward passes (one-token decode
steps and multi-token prefills). Writes ``benchmarks/results/episodes.json``.

``--engine-vs COMMIT`` checks the single-turn path instead: the ``workbench`` package of COMMIT
(``git archive``) and this one each train the default settings from the same seed, one
``GRPOTrainer.step()`` each in turn (the order alternating), and the script compares every
step's numbers (identical is the claim: a plain task is the one-turn episode) and the median of
the paired step-time ratios. Writes ``benchmarks/results/episodes-engine.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).parent / "results"
FORWARD_KEYS = [f"{kind}_{what}" for kind in ("decode", "prefill")
                for what in ("forwards", "cpu_s", "row_tokens", "padded")]

from workbench.envs import Environment, Step  # noqa: E402


def again_env(environment=Environment, step=Step):
    """An environment that replies "again" to every turn: episodes end at the turn or token
    limit (built on the given package's classes, so an older engine can run it too)."""

    class Again(environment):
        max_turns = 3

        def step(self, text):
            return step(feedback="again", done=False)

    return Again


Again = again_env()


def base_package(commit: str, module: str):
    """``workbench.<module>`` as it was at ``commit`` (``git archive``), importable beside ours."""
    import importlib
    import subprocess
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="wb-base-"))
    archive = subprocess.run(["git", "archive", commit, "workbench"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    (tmp / "workbench").rename(tmp / "workbench_base")           # relative imports only
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"workbench_base.{module}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--per-turn", type=int, default=16)
    p.add_argument("--engine-vs", metavar="COMMIT", help="single-turn steps vs this commit")
    p.add_argument("--episodes-vs", metavar="COMMIT",
                   help="also time COMMIT's sample_group and sample_episodes in every round")
    p.add_argument("--steps", type=int, default=30, help="--engine-vs: GRPO steps each")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def engine_vs(args) -> dict:
    """Default GRPO steps of this engine and COMMIT's, interleaved: same numbers? step time?"""
    import importlib

    import torch

    from workbench.settings import TrainSettings
    from workbench.trainer import GRPOTrainer

    base = base_package(args.engine_vs, "trainer")
    base_settings = importlib.import_module("workbench_base.settings")
    torch.set_num_threads(args.threads)
    ours = GRPOTrainer(TrainSettings(), None, verbose=False)
    theirs = base.GRPOTrainer(base_settings.TrainSettings(), None, verbose=False)
    keys = ("reward_mean", "loss", "entropy", "completion_length", "grad_norm")
    rows, same = [], True
    for i in range(args.steps):
        order = [("ours", ours), ("base", theirs)][:: 1 if i % 2 == 0 else -1]
        got = {}
        for name, trainer in order:
            t0 = time.perf_counter()
            m = trainer.step()
            got[name] = (time.perf_counter() - t0, {k: m[k] for k in keys})
        same &= got["ours"][1] == got["base"][1]
        rows.append({"ours_s": got["ours"][0], "base_s": got["base"][0],
                     "ratio": got["ours"][0] / got["base"][0], "same_numbers":
                     got["ours"][1] == got["base"][1], **got["ours"][1]})
        print(f"step {i + 1}: ours {got['ours'][0]:.3f}s base {got['base'][0]:.3f}s "
              f"same numbers: {got['ours'][1] == got['base'][1]}")
    warm = rows[2:] or rows
    result = {"commit": args.engine_vs, "steps": args.steps, "threads": args.threads,
              "identical_numbers_every_step": same,
              "median_ratio_ours_vs_base": statistics.median(r["ratio"] for r in warm),
              "mean_ours_s": statistics.mean(r["ours_s"] for r in warm),
              "mean_base_s": statistics.mean(r["base_s"] for r in warm),
              "load": os.getloadavg(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "episodes-engine.json").write_text(json.dumps(result, indent=2))
    print(f"identical numbers on every step: {same}; step time ours / {args.engine_vs}: "
          f"{result['median_ratio_ours_vs_base']:.3f} (median of pairs, first 2 left out); "
          f"load {result['load'][0]:.1f}")
    return result


def main(argv=None) -> dict:
    import torch

    import workbench.rollouts as ro
    from workbench.models import load_policy
    from workbench.tasks import get_task

    args = parse_args(argv)
    if args.engine_vs:
        return engine_vs(args)
    torch.set_num_threads(args.threads)
    policy = load_policy(verbose=False)
    model, tok = policy.model, policy.tokenizer
    rows = [dict(r) for r in get_task("sum").train.select(range(args.prompts))]
    prompts = [r["prompt"] for r in rows]
    budget = args.turns * args.per_turn
    plain_cache, rejoin_now = ro._plain_cache, ro._rejoin_now

    def single(seed):
        return ro.sample_group(model, tok, prompts, group_size=args.group_size,
                               max_new_tokens=budget, generator=torch.Generator().manual_seed(seed))

    def episodes(seed, keep_cache=True, rejoin=True):
        ro._plain_cache = plain_cache if keep_cache else (lambda cache: False)
        ro._rejoin_now = rejoin_now if rejoin else (lambda waiting, running: False)
        try:
            return ro.sample_episodes(model, tok, rows, env=Again, group_size=args.group_size,
                                      max_new_tokens=args.per_turn, max_turns=args.turns,
                                      max_episode_tokens=budget + 2 * 9 + 2,
                                      generator=torch.Generator().manual_seed(seed))
        finally:
            ro._plain_cache, ro._rejoin_now = plain_cache, rejoin_now

    forwards = dict.fromkeys(FORWARD_KEYS, 0)
    model_forward = model.forward

    def counted_forward(*a, **kw):               # the same forward, counted and timed by kind
        kind = "decode" if kw["input_ids"].shape[1] == 1 else "prefill"
        c0 = time.process_time()
        out = model_forward(*a, **kw)
        forwards[f"{kind}_forwards"] += 1
        forwards[f"{kind}_cpu_s"] += time.process_time() - c0
        forwards[f"{kind}_row_tokens"] += kw["input_ids"].numel()
        # a mask with padding sends attention down the masked path (KV heads copied for GQA)
        forwards[f"{kind}_padded"] += int(not bool(kw["attention_mask"].all()))
        return out

    model.forward = counted_forward
    load_before = os.getloadavg()
    runs = {"single": single, "episodes": episodes,
            "episodes_turn_synchronous": lambda seed: episodes(seed, rejoin=False),
            "episodes_reprefill": lambda seed: episodes(seed, keep_cache=False)}
    if args.episodes_vs:
        import importlib

        base = base_package(args.episodes_vs, "rollouts")
        base_envs = importlib.import_module("workbench_base.envs")
        base_again = again_env(base_envs.Environment, base_envs.Step)
        runs[f"single_{args.episodes_vs}"] = lambda seed: base.sample_group(
            model, tok, prompts, group_size=args.group_size, max_new_tokens=budget,
            generator=torch.Generator().manual_seed(seed))
        runs[f"episodes_{args.episodes_vs}"] = lambda seed: base.sample_episodes(
            model, tok, rows, env=base_again, group_size=args.group_size,
            max_new_tokens=args.per_turn, max_turns=args.turns,
            max_episode_tokens=budget + 2 * 9 + 2, generator=torch.Generator().manual_seed(seed))
    for fn in runs.values():                                         # warm-up
        fn(999)
    per_round = []
    names = list(runs)
    for r in range(args.rounds):
        got = {}
        for name in names[r % len(names):] + names[:r % len(names)]:   # order rotates
            fn = runs[name]
            forwards.update(dict.fromkeys(FORWARD_KEYS, 0))
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(r)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            tokens = int(out.action_mask.sum())
            got[name] = {"seconds": seconds, "cpu_seconds": cpu, "model_tokens": tokens,
                         "env_tokens": int(out.completion_mask.sum()) - tokens,
                         "turns_mean": sum(f["turns"] for f in out.final_info) / len(out),
                         **forwards, "rate": tokens / seconds, "cpu_rate": tokens / cpu}
        got = {name: got[name] for name in names}
        per_round.append(got)
        print(f"round {r}: " + "  ".join(f"{k} {v['rate']:.0f} tok/s ({v['model_tokens']} tok, "
                                          f"{v['seconds']:.2f}s, {v['decode_forwards']}+"
                                          f"{v['prefill_forwards']} fw)"
                                          for k, v in got.items()))

    def med(name, key):
        return statistics.median(x[name][key] for x in per_round)

    result = {
        "settings": vars(args) | {"out": str(args.out)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "load_before": load_before},
        "rate": {k: med(k, "rate") for k in runs},
        "model_tokens": {k: med(k, "model_tokens") for k in runs},
        "env_tokens": {k: med(k, "env_tokens") for k in runs},
        "turns_mean": {k: med(k, "turns_mean") for k in runs},
        **{key: {k: med(k, key) for k in runs} for key in FORWARD_KEYS},
        "ratio_vs_single": {k: statistics.median(x[k]["rate"] / x["single"]["rate"]
                                                 for x in per_round) for k in runs},
        "cpu_ratio_vs_single": {k: statistics.median(x[k]["cpu_rate"] / x["single"]["cpu_rate"]
                                                     for x in per_round) for k in runs},
        "rounds": per_round,
    }
    result["machine"]["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "episodes.json").write_text(json.dumps(result, indent=2))
    for k in list(runs)[1:]:
        print(f"{k} / single-turn tokens/s: {result['ratio_vs_single'][k]:.2f} wall, "
              f"{result['cpu_ratio_vs_single'][k]:.2f} CPU (medians of rounds)")
    print(f"load {result['machine']['load_before'][0]:.1f} -> "
          f"{result['machine']['load_after'][0]:.1f}")
    return result


if __name__ == "__main__":
    main()
