"""GPU GRPO: peak VRAM, rollout tokens/s and seconds per step, per loader tier and model size.

The models are randomly initialised Qwen2.5-0.5B / 1.5B / 3B built from their published configs
(``workbench.memory.PUBLISHED_SHAPES``): no machine here can download weights, and memory and
speed depend on the shapes, not on the values. A random model almost never samples EOS, so every
completion runs to ``--completion-tokens``: the worst case, which is what memory must plan for.

On a CUDA machine (install the unsloth tier first with ``WB_GPU=1 bash scripts/setup.sh``):

    .venv/bin/python benchmarks/gpu_grpo.py --device cuda --markdown
    .venv/bin/python benchmarks/gpu_grpo.py --device cuda --sizes 1.5B --tiers bnb4 --steps 10

Defaults: sizes 0.5B,1.5B,3B; tiers bnb4,unsloth (``plain`` = bf16 + LoRA on request);
group size 8, 4 prompts per step (32 completions of 256 tokens), micro-batch 8, generation batch
32, LoRA r=16, gradient checkpointing on, 50 steps; prompts from the ``sum`` task. Each
(size, tier) runs in its own child process, so an out-of-memory error or unsloth's patching of
transformers cannot leak into the next one. Per run it records the pre-flight estimate
(``workbench.memory``), the measured ``max_memory_allocated`` / ``max_memory_reserved`` over all
steps, rollout tokens/s and seconds per step (means after the first 2 steps), and the memory
held between steps after step ``--creep-after`` (5) and after the last step: a difference is
memory creep. Results: ``benchmarks/results/gpu_grpo.json`` (and a Markdown table with
``--markdown``).

Without CUDA, ``--device cuda`` says so and exits 0 (skipped). ``--dry-run`` runs the very same
code path on CPU with a tiny config (2 layers, hidden 64) in seconds; the test suite runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).parent / "results"
GiB = 1024 ** 3
SIZES = ("0.5B", "1.5B", "3B")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny config on CPU, a few steps: the same code path, for tests")
    p.add_argument("--sizes", default=",".join(SIZES), help="comma list of 0.5B,1.5B,3B")
    p.add_argument("--tiers", default="bnb4,unsloth", help="comma list of unsloth,bnb4,plain")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--completion-tokens", type=int, default=256)
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--generation-batch-size", type=int, default=32)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    p.add_argument("--creep-after", type=int, default=5,
                   help="compare memory held after this step with the last step")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the means")
    p.add_argument("--budget-gib", type=float, default=15.0,
                   help="device size for the 'fits' column (a 16 GB T4 leaves about 15 GiB)")
    p.add_argument("--json", default=str(RESULTS / "gpu_grpo.json"))
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--in-process", action="store_true",
                   help="run every (size, tier) in this process (no isolation; for tests)")
    p.add_argument("--one", help=argparse.SUPPRESS)          # child: SIZE:TIER
    p.add_argument("--model-dir", help=argparse.SUPPRESS)    # child: the saved random model
    args = p.parse_args(argv)
    if args.dry_run:
        args.device = "cpu"
        args.sizes = "tiny"
        if args.tiers == "bnb4,unsloth":
            args.tiers = "plain,bnb4"
        for name, value in (("steps", 6), ("group_size", 4), ("prompts_per_step", 2),
                            ("completion_tokens", 16), ("micro_batch_size", 8),
                            ("generation_batch_size", 8), ("creep_after", 2), ("warmup", 1)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
        args.lora_r = min(args.lora_r, 4)
        if args.json == p.get_default("json"):
            args.json = str(Path(tempfile.gettempdir()) / "gpu_grpo_dry_run.json")
    return args


def shape_for(size: str):
    from workbench.memory import PUBLISHED_SHAPES, ModelShape

    if size == "tiny":
        return ModelShape(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                          intermediate_size=128, vocab_size=1000)
    return PUBLISHED_SHAPES[f"Qwen2.5-{size}"]


def build_model(size: str, root: Path) -> Path:
    """Save a random model of ``size`` under ``root`` once (bf16, like the hub checkpoints)."""
    from workbench.memory import qwen2_config, save_random_model

    folder = root / f"qwen2.5-{size}-random"
    if not (folder / "config.json").exists():
        t0 = time.perf_counter()
        save_random_model(qwen2_config(shape_for(size)), folder,
                          dtype="bfloat16" if size != "tiny" else "float32")
        print(f"[gpu_grpo] built random {size} in {time.perf_counter() - t0:.0f} s: {folder}",
              flush=True)
    return folder


def _mean(xs):
    return round(statistics.fmean(xs), 4) if xs else None


def _gib(x):
    return None if x is None else round(x / GiB, 3)


def run_one(size: str, tier: str, folder: Path, args) -> dict:
    """Load, estimate, train ``args.steps`` GRPO steps, measure. Returns one result row."""
    import torch

    from workbench.memory import (
        MemoryTracker, estimate_for_settings, longest_prompt_tokens,
    )
    from workbench.models import load_policy
    from workbench.settings import (
        GRPOSettings, ModelSettings, SettingsError, TaskSettings, TrainSettings,
    )
    from workbench.tasks import get_task
    from workbench.trainer import GRPOTrainer

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    row = {"size": size, "tier": tier, "device": args.device, "status": "ok",
           "group_size": args.group_size, "prompts_per_step": args.prompts_per_step,
           "completion_tokens": args.completion_tokens, "micro_batch_size": args.micro_batch_size,
           "generation_batch_size": args.generation_batch_size, "lora_r": args.lora_r,
           "gradient_checkpointing": not args.no_gradient_checkpointing}
    seq = args.completion_tokens + 256
    ms = ModelSettings(model=str(folder), tier=tier, lora=True, lora_r=args.lora_r,
                       lora_alpha=2 * args.lora_r,
                       gradient_checkpointing=not args.no_gradient_checkpointing,
                       max_seq_length=seq)
    settings = TrainSettings(
        model=ms, task=TaskSettings(name="sum"), steps=args.steps, device=args.device,
        grpo=GRPOSettings(group_size=args.group_size, prompts_per_step=args.prompts_per_step,
                          generation_batch_size=args.generation_batch_size,
                          micro_batch_size=args.micro_batch_size,
                          max_new_tokens=args.completion_tokens, learning_rate=1e-5))
    try:
        policy = load_policy(ms, device=device, verbose=True)
    except SettingsError as exc:
        row["status"] = f"skipped: {exc}".splitlines()[0]
        return row
    task = get_task("sum", n_train=2000, n_test=10)
    prompt_tokens = longest_prompt_tokens(policy.tokenizer, task.train["prompt"])
    est = estimate_for_settings(settings, policy.model.config, tier=policy.tier,
                                prompt_tokens=prompt_tokens, device_type=device.type)
    row.update(parameters=policy.total_parameters, trainable=policy.trainable_parameters,
               longest_prompt_tokens=prompt_tokens, estimate_gib=_gib(est.total),
               estimate_peak_allocated_gib=_gib(est.peak_allocated), estimate_phase=est.phase,
               estimate_biggest=est.biggest(), fits_budget=est.total <= args.budget_gib * GiB,
               estimate_parts_gib={k: _gib(v) for k, v in est.parts().items()})
    print(est.explain(), flush=True)
    trainer = GRPOTrainer(settings, policy=policy, task=task, verbose=False)
    if cuda:
        torch.cuda.synchronize(device)
        row["loaded_allocated_gib"] = _gib(torch.cuda.memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
    tracker = MemoryTracker(device)
    history, peak_reserved = [], 0
    t0 = time.perf_counter()
    try:
        for step in range(1, args.steps + 1):
            m = trainer.step()
            if cuda:
                torch.cuda.synchronize(device)
                peak_reserved = max(peak_reserved, torch.cuda.max_memory_reserved(device))
            tracker.record(step)
            history.append(m)
            print(f"[gpu_grpo] {size} {tier} step {step}: {m['step_seconds']:.2f} s, "
                  f"{m['generation_tokens_per_second']:.0f} rollout tok/s, completion length "
                  f"{m['completion_length']:.0f}", flush=True)
    except torch.cuda.OutOfMemoryError as exc:
        row["status"] = f"OOM at step {len(history) + 1}: {str(exc).splitlines()[0][:160]}"
    row["wall_seconds"] = round(time.perf_counter() - t0, 1)
    row["steps"] = len(history)
    later = history[args.warmup:] or history
    row["seconds_per_step"] = _mean([m["step_seconds"] for m in later])
    row["generation_seconds_per_step"] = _mean([m["generation_seconds"] for m in later])
    row["training_seconds_per_step"] = _mean([m["training_seconds"] for m in later])
    row["rollout_tokens_per_second"] = _mean([m["generation_tokens_per_second"] for m in later])
    row["mean_completion_tokens"] = _mean([m["completion_length"] for m in history])
    if tracker.records:
        first, last = tracker.at(args.creep_after), tracker.records[-1]
        row["peak_allocated_gib"] = _gib(tracker.peak)
        row["peak_reserved_gib"] = _gib(peak_reserved)
        row["estimate_error"] = round(est.peak_allocated / tracker.peak - 1, 3)
        row[f"allocated_after_step_{first.step if first else args.creep_after}_gib"] = \
            _gib(first.allocated) if first else None
        row[f"allocated_after_step_{last.step}_gib"] = _gib(last.allocated)
        row["creep_mib"] = round(tracker.creep_bytes(args.creep_after) / 2 ** 20, 1)
        row["peak_creep_mib"] = round(tracker.peak_creep_bytes(args.creep_after) / 2 ** 20, 1)
    else:
        row.update(peak_allocated_gib=None, peak_reserved_gib=None, estimate_error=None,
                   creep_mib=None, peak_creep_mib=None)
    return row


def _child(args) -> int:
    size, tier = args.one.split(":")
    row = run_one(size, tier, Path(args.model_dir), args)
    Path(args.json).write_text(json.dumps(row))
    return 0


def _spawn(size: str, tier: str, folder: Path, argv: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--one", f"{size}:{tier}",
           "--model-dir", str(folder), "--json", str(out)]
    proc = subprocess.run(cmd)
    try:
        return json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        return {"size": size, "tier": tier, "status": f"crashed (exit {proc.returncode})"}
    finally:
        out.unlink(missing_ok=True)


def _model_name(size: str) -> str:
    return "tiny Qwen2 (dry run)" if size == "tiny" else f"Qwen2.5-{size} (random init)"


def markdown(rows: list[dict]) -> str:
    head = ("| model | tier | status | estimate GiB (fits 15 GiB?) | peak allocated GiB | "
            "estimate error | peak reserved GiB | rollout tok/s | s/step | held after step 5 "
            "-> last (GiB) | creep MiB |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        held = [v for k, v in r.items() if k.startswith("allocated_after_step_")]
        lines.append(
            f"| {_model_name(r['size'])} | {r['tier']} | {r['status']} | "
            f"{r.get('estimate_gib')} ({'yes' if r.get('fits_budget') else 'no'}) | "
            f"{r.get('peak_allocated_gib')} | {r.get('estimate_error')} | "
            f"{r.get('peak_reserved_gib')} | {r.get('rollout_tokens_per_second')} | "
            f"{r.get('seconds_per_step')} | {' -> '.join(str(h) for h in held) or '-'} | "
            f"{r.get('creep_mib')} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.one:
        _child(args)
        return []
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"[gpu_grpo] skipped: --device {args.device} needs a CUDA GPU, and none is visible "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU "
              "machine, or use --dry-run to exercise the code path on CPU.")
        return []
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    machine = {"python": platform.python_version(), "torch": torch.__version__,
               "device": (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                          else platform.processor() or "cpu"),
               "device_memory_gib": (_gib(torch.cuda.get_device_properties(0).total_memory)
                                     if args.device.startswith("cuda") else None)}
    print(f"[gpu_grpo] {machine}", flush=True)
    rows = []
    child_argv = [a for a in argv if a != "--in-process"]
    with tempfile.TemporaryDirectory(prefix="gpu_grpo-") as tmp:
        for size in sizes:
            folder = build_model(size, Path(tmp))
            for tier in tiers:
                print(f"[gpu_grpo] --- {size} / {tier} ---", flush=True)
                if args.in_process:
                    row = run_one(size, tier, folder, args)
                else:
                    row = _spawn(size, tier, folder, child_argv)
                row.update(machine=machine)
                rows.append(row)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine, "rows": rows}, indent=2))
    print(f"[gpu_grpo] wrote {out}")
    if args.markdown:
        print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
