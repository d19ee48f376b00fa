"""Latent reasoning over seeds: Coconut's three modes and the recurrent-depth iteration sweep.

For each seed, builds (or reads from the cache) the Coconut-arm models and the recurrent-depth
model with that seed, then measures on the fixed held-out problems of each task:

- no-CoT / CoT / continuous thoughts: accuracy (``verifiers.verify_math``), visible tokens and
  generated positions (thoughts included) per problem, wall seconds per answer;
- recurrent depth: accuracy and seconds per answer at r in ``--iterations``, and with the
  adaptive KL exit (accuracy, mean exit depth, histogram of exit depths).

    .venv/bin/python benchmarks/latent.py                       # 3 seeds, 200 problems per task
    .venv/bin/python benchmarks/latent.py --seeds 0 --n-test 50 # quick look
    .venv/bin/python benchmarks/latent.py --build-cost          # builds, in tiny-step units
    .venv/bin/python benchmarks/latent.py --grpo 100 --n-test 100  # GRPO on the thoughts model

Writes ``benchmarks/results/latent.json`` (every number, plus load and build times) and
``latent.png``, and prints the tables pasted into benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def option_share(task: str, problems_: list, answers: list) -> float | None:
    """Reachability only: share of answers that name one of the question's two options (the
    models of last round named letters that were not options; guessing between them is 0.5)."""
    if task != "reach":
        return None
    said = [re.search(r"<answer>(.*?)</answer>", a.text) for a in answers]
    named = [bool(m) and m.group(1).strip() in p[2:4] for m, p in zip(said, problems_)]
    return sum(named) / len(named)


def run_seed(seed: int, *, n_test: int, iterations: list[int], threshold: float) -> dict:
    from workbench.latent.coconut import (MODES, CoconutSpec, ensure_coconut_models,
                                          evaluate_mode, load_coconut, problems)
    from workbench.latent.recurrent import (RecurrentSpec, ensure_recurrent_model,
                                            evaluate_depth, load_recurrent)

    out = {"seed": seed, "modes": {}, "depth": {}}
    cspec = dataclasses.replace(CoconutSpec(), seed=seed)
    out["coconut_build"] = json.loads((ensure_coconut_models(cspec) / "build_info.json").read_text())
    for mode in MODES:
        model, tok = load_coconut(mode, cspec, verbose=False)
        for task, (writer, probs) in problems(cspec, n_test=n_test).items():
            t0 = time.perf_counter()
            r = evaluate_mode(model, tok, writer, probs,
                              n_thoughts=cspec.n_thoughts if mode == "coconut" else 0)
            out["modes"][f"{mode}/{task}"] = {
                "accuracy": r["accuracy"], "tokens": r["tokens"], "generated": r["generated"],
                "named_option": option_share(task, probs, r["answers"]),
                "seconds_per_answer": (time.perf_counter() - t0) / len(probs)}
            print(f"seed {seed} {mode:8s} {task:6s} acc {r['accuracy']:.3f} "
                  f"generated {r['generated']:.1f}", flush=True)
    rspec = dataclasses.replace(RecurrentSpec(), seed=seed)
    out["recurrent_build"] = json.loads(
        (ensure_recurrent_model(rspec) / "build_info.json").read_text())
    model, tok = load_recurrent(rspec, verbose=False)
    for task, writer in zip(rspec.tasks, rspec.writers()):
        probs = writer.split(0, n_test)[1]
        for r in iterations:
            t0 = time.perf_counter()
            res = evaluate_depth(model, tok, writer, probs, iterations=r)
            out["depth"][f"{task}/r={r}"] = {
                "accuracy": res["accuracy"],
                "named_option": option_share(task, probs, res["answers"]),
                "seconds_per_answer": (time.perf_counter() - t0) / len(probs)}
            print(f"seed {seed} recurrent {task:6s} r={r:2d} acc {res['accuracy']:.3f}", flush=True)
        t0 = time.perf_counter()
        res = evaluate_depth(model, tok, writer, probs, threshold=threshold,
                             max_iterations=max(iterations))
        out["depth"][f"{task}/adaptive"] = {
            "accuracy": res["accuracy"], "mean_depth": res["mean_depth"],
            "named_option": option_share(task, probs, res["answers"]),
            "depth_histogram": dict(sorted(Counter(res["depths"]).items())),
            "seconds_per_answer": (time.perf_counter() - t0) / len(probs)}
        print(f"seed {seed} recurrent {task:6s} adaptive acc {res['accuracy']:.3f} "
              f"mean depth {res['mean_depth']:.1f}", flush=True)
    return out


def run_grpo(seed: int, *, n_test: int, steps: int, temperature: float,
             learning_rate: float) -> dict:
    """Greedy held-out accuracy of the Coconut model before and after ``steps`` GRPO steps
    (answers sampled after deterministic thoughts; ``workbench.latent.thought_grpo``)."""
    from workbench.latent.coconut import CoconutSpec, evaluate_mode, load_coconut, problems
    from workbench.latent.thought_grpo import train_grpo

    spec = dataclasses.replace(CoconutSpec(), seed=seed)
    model, tok = load_coconut("coconut", spec, verbose=False)
    held_out = problems(spec, n_test=n_test)

    def accuracy():
        return {task: evaluate_mode(model, tok, w, ps, n_thoughts=spec.n_thoughts)["accuracy"]
                for task, (w, ps) in held_out.items()}

    before = accuracy()
    t0 = time.process_time()
    hist = train_grpo(model, tok, spec.writers(), n_thoughts=spec.n_thoughts, steps=steps,
                      temperature=temperature, learning_rate=learning_rate, seed=seed)
    cpu = time.process_time() - t0
    after = accuracy()
    tenth = max(1, steps // 10)
    out = {"seed": seed, "before": before, "after": after, "cpu_seconds": round(cpu, 1),
           "train_reward_first": statistics.mean(h.reward for h in hist[:tenth]),
           "train_reward_last": statistics.mean(h.reward for h in hist[-tenth:]),
           "zero_std_share": statistics.mean(h.zero_std for h in hist)}
    print(f"seed {seed} GRPO: before {before} after {after}; sampled reward "
          f"{out['train_reward_first']:.3f} -> {out['train_reward_last']:.3f}", flush=True)
    return out


def tiny_step_seconds(steps: int = 8) -> float:
    """CPU seconds (``process_time``) of one default tiny-model pretraining step."""
    from transformers import AutoModelForCausalLM

    from workbench.tiny import (TinySpec, corpus_examples, pretrain, render_chat, tiny_config,
                                train_tokenizer)

    spec = dataclasses.replace(TinySpec(), corpus_size=2000, pretrain_steps=steps)
    texts = [render_chat(p, c) for p, c in corpus_examples(spec)]
    tok = train_tokenizer(texts, spec.vocab_size)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    model = AutoModelForCausalLM.from_config(tiny_config(spec, tok))
    start = time.process_time()
    pretrain(model, ids, ids, spec, pad_id=tok.pad_token_id, verbose=False)
    return (time.process_time() - start) / steps


def build_cost() -> dict:
    """CPU seconds of each default latent build (into a temporary folder, nothing cached) in
    units of a default tiny pretraining step timed in the same process before and after."""
    import tempfile

    from workbench.latent.coconut import build_coconut_models
    from workbench.latent.recurrent import build_recurrent_model

    before = tiny_step_seconds()
    with tempfile.TemporaryDirectory(prefix="latent-cost-") as tmp:
        start = time.process_time()
        build_coconut_models(Path(tmp) / "coconut", verbose=False)
        coconut = time.process_time() - start
        start = time.process_time()
        build_recurrent_model(Path(tmp) / "recurrent", verbose=False)
        recurrent = time.process_time() - start
    unit = (before + tiny_step_seconds()) / 2
    return {"tiny_step_s": round(unit, 4), "coconut_s": round(coconut, 1),
            "recurrent_s": round(recurrent, 1), "coconut_tiny_steps": round(coconut / unit),
            "recurrent_tiny_steps": round(recurrent / unit), "load_average": os.getloadavg()}


def summarise(runs: list[dict]) -> str:
    def cell(values, fmt="{:.3f}"):
        if len(values) == 1:
            return fmt.format(values[0])
        return (fmt + " ± " + fmt).format(statistics.mean(values), statistics.stdev(values))

    def named(rows):
        shares = [x.get("named_option") for x in rows]
        return "–" if None in shares else cell(shares, "{:.2f}")

    lines = ["| task | mode | accuracy | names an option | visible tokens | generated (thoughts "
             "incl.) | s / answer |", "|---|---|---|---|---|---|---|"]
    for key in runs[0]["modes"]:
        mode, task = key.split("/")
        rows = [r["modes"][key] for r in runs]
        lines.append(f"| {task} | {mode} | {cell([x['accuracy'] for x in rows])} | "
                     f"{named(rows)} | {cell([x['tokens'] for x in rows], '{:.1f}')} | "
                     f"{cell([x['generated'] for x in rows], '{:.1f}')} | "
                     f"{cell([x['seconds_per_answer'] for x in rows], '{:.4f}')} |")
    lines += ["", "| task | depth | accuracy | names an option | s / answer |",
              "|---|---|---|---|---|"]
    for key in runs[0]["depth"]:
        task, depth = key.split("/")
        rows = [r["depth"][key] for r in runs]
        extra = (f" (mean exit depth {cell([x['mean_depth'] for x in rows], '{:.1f}')})"
                 if "mean_depth" in rows[0] else "")
        lines.append(f"| {task} | {depth}{extra} | {cell([x['accuracy'] for x in rows])} | "
                     f"{named(rows)} | {cell([x['seconds_per_answer'] for x in rows], '{:.4f}')} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in runs[0]["modes"]:
        xs = [r["modes"][key]["generated"] for r in runs]
        ys = [r["modes"][key]["accuracy"] for r in runs]
        a.scatter(xs, ys, label=key)
    a.set(xlabel="generated positions per problem (thoughts included)", ylabel="accuracy",
          ylim=(0, 1.05),
          title="Coconut arm, one dot per seed")
    a.legend(fontsize=7)
    tasks = sorted({k.split("/")[0] for k in runs[0]["depth"]})
    for task in tasks:
        keys = [k for k in runs[0]["depth"] if k.startswith(task + "/r=")]
        rs = [int(k.split("=")[1]) for k in keys]
        accs = [statistics.mean(r["depth"][k]["accuracy"] for r in runs) for k in keys]
        b.plot(rs, accs, marker="o", label=task)
    b.set(xscale="log", xlabel="core iterations r at test time", ylabel="accuracy (mean)",
          ylim=(0, 1.05),
          title="recurrent depth")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--threshold", type=float, default=5e-4)
    parser.add_argument("--tag", default="")
    parser.add_argument("--grpo", type=int, default=0, metavar="STEPS",
                        help="only GRPO on the Coconut model: greedy accuracy before and after")
    parser.add_argument("--grpo-temperature", type=float, default=0.7)
    parser.add_argument("--grpo-lr", type=float, default=1e-4)
    parser.add_argument("--build-cost", action="store_true",
                        help="only time the two builds against a tiny pretraining step")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from workbench.latent.coconut import CoconutSpec
    from workbench.latent.recurrent import RecurrentSpec

    if args.build_cost:
        cost = build_cost()
        print(json.dumps(cost))
        (ROOT / "benchmarks" / "results" / "latent-build-cost.json").write_text(
            json.dumps(cost, indent=1))
        return

    start = time.time()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    if args.grpo:
        runs = [run_grpo(seed, n_test=args.n_test, steps=args.grpo,
                         temperature=args.grpo_temperature, learning_rate=args.grpo_lr)
                for seed in args.seeds]
        (results / "latent-grpo.json").write_text(json.dumps({
            "args": vars(args), "runs": runs, "seconds": round(time.time() - start),
            "load_average_end": os.getloadavg()}, indent=1))
        return
    runs = []
    for seed in args.seeds:       # one file per seed: seeds can run in parallel, then be joined
        done = results / f"latent-seed{seed}.json"
        how = {k: getattr(args, k) for k in ("n_test", "iterations", "threshold")}
        setting = {**how, "spec_keys": [CoconutSpec().key(), RecurrentSpec().key()]}  # new specs
        if done.exists() and json.loads(done.read_text())["setting"] == setting:     # re-run
            runs.append(json.loads(done.read_text())["run"])
            continue
        runs.append(run_seed(seed, **how))
        done.write_text(json.dumps({"setting": setting, "run": runs[-1],
                                    "load_average_end": os.getloadavg()}, indent=1))
    table = summarise(runs)
    print(table)
    name = "latent" + (f"-{args.tag}" if args.tag else "")
    (results / f"{name}.json").write_text(json.dumps({
        "args": vars(args), "runs": runs, "table": table, "seconds": round(time.time() - start),
        "load_average_end": os.getloadavg(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__}, indent=1))
    plot(runs, results / f"{name}.png")


if __name__ == "__main__":
    main()
