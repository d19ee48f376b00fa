"""Our GRPO engine vs ``trl.GRPOTrainer`` on the same tiny model and task, in one run.

    python benchmarks/grpo_vs_trl.py                    # 40 steps each, interleaved, 2 threads
    python benchmarks/grpo_vs_trl.py --steps 10         # a quick look
    python benchmarks/grpo_vs_trl.py --mode sequential  # ours, TRL, then ours again (10 steps)

What is held equal: the weights (a fresh copy of the embedded tiny model for each engine), the
``sum`` task's training prompts, its reward functions and weights (answer 1.0, format 0.1), 8
prompts x 8 completions = 64 completions per optimiser step, one optimiser step per generation,
48 new tokens at most, temperature 1.0, top-p 1.0, no top-k, AdamW (betas 0.9/0.99, no weight
decay, constant learning rate, no warm-up, gradient norm clipped to 1.0), the dapo loss with
beta 0 and clip range 0.2 / 0.28, rewards scaled by the group's std, fp32 on CPU, no gradient
checkpointing, and ``torch.set_num_threads`` for both. Both shuffle the prompts with seed 0 but
in their own orders, so the prompts differ from step to step (not the distribution).

How it is timed. By default the two run *interleaved*: TRL's ``Trainer`` drives, a callback
stamps each TRL step between ``on_step_begin`` and ``on_step_end`` and then runs one step of ours
(timed with ``perf_counter`` around ``GRPOTrainer.step()``) before TRL goes on. Each pair of steps
thus sees the same load on a shared machine. TRL's "cycle" (one ``on_step_end`` to the next, our
step excluded) adds what the ``Trainer`` does between steps (fetching the batch, logging). The
first ``--warmup`` steps of each are left out of the means. TRL's reward per step is the
``reward`` of its log (``logging_steps=1``); its generation and reward time come from wrapping
``_generate_single_turn`` and ``_calculate_rewards`` with a timer.

Writes ``benchmarks/results/grpo_vs_trl.json`` and ``.png`` (reward and seconds per step).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).parent / "results"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40, help="optimiser steps for each engine")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the means")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("interleaved", "sequential"), default="interleaved")
    p.add_argument("--second", type=int, default=10,
                   help="sequential mode: steps of a second sample of ours after TRL")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default="", help="suffix for the output file names")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# the two engines
# ---------------------------------------------------------------------------------------------

def tiny_path() -> str:
    from workbench.tiny import TinySpec, ensure_tiny_model
    return str(ensure_tiny_model(TinySpec(tasks=("sum",)), verbose=True))


def build_ours(args):
    from workbench.settings import GRPOSettings, TrainSettings
    from workbench.trainer import GRPOTrainer

    settings = TrainSettings(grpo=GRPOSettings(), steps=args.steps, seed=args.seed, device="cpu",
                             threads=args.threads)
    return GRPOTrainer(settings, out=None, verbose=False)


class OursRecorder:
    """Runs one step of ours and keeps its timings and reward."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.rows: list[dict] = []

    def step(self) -> None:
        load = os.getloadavg()[0]
        c0, t0 = time.process_time(), time.perf_counter()
        m = self.trainer.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.rows.append({"step": m["step"], "wall": wall, "cpu": cpu,
                          "step_seconds": m["step_seconds"], "generation": m["generation_seconds"],
                          "reward_time": m["reward_seconds"],
                          "training": m["training_seconds"], "reward": m["reward_mean"],
                          "accuracy": m["accuracy"], "completion_length": m["completion_length"],
                          "load1": load})


def build_trl(args, ours: OursRecorder | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from workbench.settings import GRPOSettings, TrainSettings
    from workbench.tasks import get_task

    g = GRPOSettings()
    s = TrainSettings(seed=args.seed)
    task = get_task(s.task.name)
    path = tiny_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    n = g.group_size * g.prompts_per_step
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="grpo_vs_trl_"),
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        seed=args.seed, max_steps=args.steps,
        per_device_train_batch_size=n, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=g.group_size, num_iterations=g.num_iterations,
        max_completion_length=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p, top_k=0,
        learning_rate=g.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.99, weight_decay=g.weight_decay,
        max_grad_norm=g.max_grad_norm,
        loss_type=g.loss_type, beta=g.beta, epsilon=g.epsilon_low, epsilon_high=g.epsilon_high,
        scale_rewards="group" if g.scale_rewards else "none",
        reward_weights=list(task.reward_weights), mask_truncated_completions=False,
        use_vllm=False, log_completions=False, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
    )
    rec = TRLRecorder(ours, args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=list(task.reward_funcs), args=config,
                              train_dataset=task.train, processing_class=tok,
                              callbacks=[rec.callback()])
    rec.instrument(trainer)
    trainer.remove_callback(PrinterCallback)        # it prints every log dict with tqdm off
    torch.set_num_threads(args.threads)
    return trainer, rec


class TRLRecorder:
    """Stamps TRL's steps; in interleaved mode runs one step of ours after each of TRL's."""

    def __init__(self, ours: OursRecorder | None, threads: int):
        self.ours, self.threads = ours, threads
        self.rows: list[dict] = []
        self._t0 = self._last_end = None
        self._gen = self._rew = 0.0

    def instrument(self, trainer) -> None:
        def timed(fn, slot):
            def wrapper(*a, **kw):
                t = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    setattr(self, slot, getattr(self, slot) + time.perf_counter() - t)
            return wrapper
        trainer._generate_single_turn = timed(trainer._generate_single_turn, "_gen")
        trainer._calculate_rewards = timed(trainer._calculate_rewards, "_rew")

    def callback(self):
        """A ``TrainerCallback`` that stamps TRL's steps and logs into this recorder."""
        from transformers import TrainerCallback

        rec = self

        class Callback(TrainerCallback):
            def on_step_begin(self, a, state, control, **kw):
                rec.begin()

            def on_step_end(self, a, state, control, **kw):
                rec.end(state.global_step)

            def on_log(self, a, state, control, logs=None, **kw):
                rec.log(logs or {})

        return Callback()

    def begin(self) -> None:
        import torch
        assert torch.get_num_threads() == self.threads, torch.get_num_threads()
        self._load = os.getloadavg()[0]
        self._gen = self._rew = 0.0
        self._c0, self._t0 = time.process_time(), time.perf_counter()

    def end(self, step: int) -> None:
        now, cpu = time.perf_counter(), time.process_time() - self._c0
        cycle = now - self._last_end if self._last_end is not None else None
        self.rows.append({"step": step, "wall": now - self._t0, "cpu": cpu, "cycle": cycle,
                          "generation": self._gen, "reward_time": self._rew,
                          "training": now - self._t0 - self._gen - self._rew, "load1": self._load})
        if self.ours is not None:
            self.ours.step()
            o = self.ours.rows[-1]
            print(f"step {step:3d}: TRL {self.rows[-1]['wall']:6.2f} s, ours {o['wall']:6.2f} s, "
                  f"load {self._load:.1f}", file=sys.stderr, flush=True)
        self._last_end = time.perf_counter()     # our step is not part of TRL's cycle

    def log(self, logs: dict) -> None:
        if "reward" in logs and self.rows and "reward" not in self.rows[-1]:
            self.rows[-1]["reward"] = logs["reward"]
            acc = logs.get("rewards/answer_reward/mean")
            self.rows[-1]["accuracy"] = acc
            self.rows[-1]["completion_length"] = logs.get("completions/mean_length")


# ---------------------------------------------------------------------------------------------
# summary, table, plot
# ---------------------------------------------------------------------------------------------

def summarise(rows: list[dict], warmup: int, per_step: int,
              keys=("wall", "cpu", "generation", "reward_time", "training")):
    timed = rows[warmup:] or rows
    out = {"steps": len(rows), "timed_steps": len(timed)}
    for k in keys:
        vals = [r[k] for r in timed if r.get(k) is not None]
        if vals:
            out[f"{k}_mean"] = statistics.fmean(vals)
            out[f"{k}_median"] = statistics.median(vals)
    lengths = [(r["wall"], r["completion_length"]) for r in timed if r.get("completion_length")]
    if lengths:     # seconds per 1000 completion tokens: corrects for the two drifting apart
        out["completion_length_mean"] = statistics.fmean(n for _, n in lengths)
        out["seconds_per_1k_tokens"] = 1000 * sum(w for w, _ in lengths) / sum(
            per_step * n for _, n in lengths)
    rewards = [r["reward"] for r in rows if r.get("reward") is not None]
    k = min(5, len(rewards))
    out["reward_first5"] = statistics.fmean(rewards[:k]) if k else None
    out["reward_last5"] = statistics.fmean(rewards[-k:]) if k else None
    out["load1_mean"] = statistics.fmean(r["load1"] for r in rows)
    return out


def machine() -> dict:
    import torch
    import transformers
    import trl
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "platform": platform.platform()}


def table(res: dict) -> str:
    o, t = res["ours"], res["trl"]

    def f(x, fmt):
        return "-" if x is None else fmt.format(x)

    rows = [("mean step s", "wall_mean", "{:.3f}"), ("median step s", "wall_median", "{:.3f}"),
            ("mean CPU s (process time, all threads)", "cpu_mean", "{:.3f}"),
            ("mean generation s", "generation_mean", "{:.3f}"),
            ("mean reward s", "reward_time_mean", "{:.3f}"),
            ("mean training s (rest of the step)", "training_mean", "{:.3f}"),
            ("mean completion length (tokens)", "completion_length_mean", "{:.1f}"),
            ("seconds per 1000 completion tokens", "seconds_per_1k_tokens", "{:.3f}"),
            ("reward, first 5 steps", "reward_first5", "{:.3f}"),
            ("reward, last 5 steps", "reward_last5", "{:.3f}"),
            ("load average (1 min)", "load1_mean", "{:.2f}")]
    lines = ["| | ours | TRL |", "|---|---|---|"]
    lines += [f"| {label} | {f(o.get(key), fmt)} | {f(t.get(key), fmt)} |"
              for label, key, fmt in rows]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, rows, color in (("ours", res["ours_steps"], "tab:blue"),
                              ("TRL GRPOTrainer", res["trl_steps"], "tab:orange")):
        steps = [r["step"] for r in rows]
        ax1.plot(steps, [r.get("reward") for r in rows], label=name, color=color, lw=1.5)
        ax2.plot(steps, [r["wall"] for r in rows], label=name, color=color, lw=1.5)
    if res.get("ours_second_steps"):
        rows = res["ours_second_steps"]
        ax2.plot([r["step"] for r in rows], [r["wall"] for r in rows], label="ours (2nd sample)",
                 color="tab:blue", ls="--", lw=1)
    ax1.set(xlabel="optimiser step", ylabel="mean reward (64 completions)",
            title="Reward per step (answer + 0.1 format)")
    ax2.set(xlabel="optimiser step", ylabel="seconds", ylim=(0, None),
            title=f"Step time: ours / TRL = {res['ratio_mean']:.2f} (mean)")
    ax1.legend()
    ax2.legend()
    fig.suptitle(f"tiny Qwen2 on 'sum', 8x8 completions/step, torch threads="
                 f"{res['config']['threads']}, {res['config']['mode']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    tiny_path()                                     # build / load the cache before any timing
    command = " ".join(["python benchmarks/grpo_vs_trl.py", *(argv if argv is not None
                                                             else sys.argv[1:])])
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    second = None
    if args.mode == "interleaved":
        ours = OursRecorder(build_ours(args))
        trainer, trl_rec = build_trl(args, ours)
        trainer.train()
    else:
        ours = OursRecorder(build_ours(args))
        for _ in range(args.steps):
            ours.step()
        load_mid = os.getloadavg()
        trainer, trl_rec = build_trl(args, None)
        trainer.train()
        second = OursRecorder(ours.trainer)
        for _ in range(args.second):
            second.step()
    load_after = os.getloadavg()
    g = ours.trainer.settings.grpo
    per_step = g.group_size * g.prompts_per_step
    res = {"command": command.strip(), "machine": machine(),
           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "loadavg_before": load_before, "loadavg_after": load_after,
           "seconds_total": time.perf_counter() - t_start,
           "model": {"path": tiny_path(), "parameters": sum(
               p.numel() for p in ours.trainer.model.parameters())},
           "ours": summarise(ours.rows, args.warmup, per_step),
           "trl": summarise(trl_rec.rows, args.warmup, per_step),
           "ours_steps": ours.rows, "trl_steps": trl_rec.rows}
    res["trl"]["cycle_mean"] = statistics.fmean(
        r["cycle"] for r in trl_rec.rows[args.warmup:] if r["cycle"] is not None)
    if second is not None:
        res["loadavg_mid"] = load_mid
        res["ours_second"] = summarise(second.rows, 0, per_step)
        res["ours_second_steps"] = second.rows
    res["ratio_mean"] = res["ours"]["wall_mean"] / res["trl"]["wall_mean"]
    res["ratio_median"] = res["ours"]["wall_median"] / res["trl"]["wall_median"]
    res["ratio_cpu"] = res["ours"]["cpu_mean"] / res["trl"]["cpu_mean"]
    res["ratio_per_token"] = (res["ours"]["seconds_per_1k_tokens"]
                              / res["trl"]["seconds_per_1k_tokens"])
    res["ratio_vs_trl_cycle"] = res["ours"]["wall_mean"] / res["trl"]["cycle_mean"]
    pairs = [o["wall"] / t["wall"] for o, t in zip(ours.rows, trl_rec.rows)][args.warmup:]
    res["ratio_median_of_pairs"] = statistics.median(pairs) if pairs else None

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "grpo_vs_trl" + (f"-{args.tag}" if args.tag else "")
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1))
    plot(res, args.out / f"{stem}.png")
    print(table(res))
    print(f"\nstep time ours / TRL: mean {res['ratio_mean']:.3f}, "
          f"median {res['ratio_median']:.3f}, "
          f"median of paired steps {res['ratio_median_of_pairs']:.3f} "
          f"(vs TRL's full cycle incl. batch fetch + logging: {res['ratio_vs_trl_cycle']:.3f}; "
          f"CPU seconds: {res['ratio_cpu']:.3f}; "
          f"per completion token: {res['ratio_per_token']:.3f}); "
          f"target <= 0.6")
    if second is not None:
        print(f"ours, second sample after TRL: mean step {res['ours_second']['wall_mean']:.3f} s")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
          f"{res['seconds_total']:.0f} s in all; wrote {args.out}/{stem}.json and .png")
    return res


if __name__ == "__main__":
    main()
