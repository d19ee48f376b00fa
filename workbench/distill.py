"""Distillation vs RL-zero vs SFT->RL on one token budget (notebook 08).

Three arms start from the same base model and the same training prompts:

- ``rl``: GRPO from the base ("RL-zero", DeepSeek-R1-Zero's recipe at toy scale);
- ``sft``: SFT on the teacher's traces ("distillation"; with the tiny default the teacher is the
  task's programmatic solver, so this is SFT on gold traces -- see ``workbench.sft``);
- ``sft_rl``: SFT on a few traces (``few_traces``) to learn the format, then GRPO.

What is held fixed, as the papers ask: the base checkpoint and tokenizer, the prompt pool, one
verifier (it filters the teacher's traces and pays the RL reward), the evaluation (greedy
held-out accuracy, and pass@k sampled at one temperature with one seed), full fine-tuning in
every arm, and the **budget in tokens**: an arm stops at the first step that reaches it.

- RL spends the completion tokens it samples plus those it trains on (``num_iterations``
  passes): ``generated * (1 + num_iterations)`` per step;
- SFT spends the completion tokens it trains on.

Prompt tokens are not counted in either (both arms read the same prompts). The teacher's cost
is reported apart: the tokens of the traces it wrote (a programmatic teacher costs no model
compute). CPU seconds are reported too, since a token generated and a token trained cost
different time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from .evals import PassAtK, plot_pass_at_k, sample_pass_at_k
from .models import load_policy
from .settings import SettingsError, SFTOptions, SFTSettings, TaskSettings, TrainSettings
from .sft import SFTTrainer, teacher_traces
from .tasks import get_task
from .trainer import GRPOTrainer, evaluate_policy

ARMS = ("rl", "sft", "sft_rl")
ARM_NAMES = {"base": "base", "rl": "RL-zero", "sft": "SFT on teacher traces",
             "sft_rl": "SFT (few traces) -> RL"}


@dataclass(frozen=True)
class ArmResult:
    """One arm after one seed: what it spent and how it scores."""

    arm: str                          # base | rl | sft | sft_rl
    seed: int
    steps: dict                       # optimiser steps per phase, e.g. {"sft": 8, "rl": 20}
    generated_tokens: int             # sampled during training (RL phases)
    trained_tokens: int               # completion tokens in training forward/backward passes
    teacher_tokens: int               # tokens of the teacher traces seen (reported apart)
    cpu_seconds: float                # training only (time.process_time)
    accuracy: float                   # greedy, held-out, in distribution
    ood_accuracy: float               # greedy, held-out, out of distribution
    pass_at_k: PassAtK                # sampled, in distribution
    ood_pass_at_k: PassAtK            # sampled, out of distribution

    @property
    def budget_tokens(self) -> int:
        return self.generated_tokens + self.trained_tokens

    def as_row(self) -> dict:
        return {"arm": ARM_NAMES[self.arm], "seed": self.seed,
                "steps": "+".join(f"{v} {k}" for k, v in self.steps.items()) or "-",
                "tokens": self.budget_tokens, "teacher_tokens": self.teacher_tokens,
                "cpu_s": round(self.cpu_seconds, 1), "accuracy": round(self.accuracy, 3),
                "ood_accuracy": round(self.ood_accuracy, 3),
                "pass@1": round(self.pass_at_k.at(1), 3),
                f"pass@{self.pass_at_k.n}": round(self.pass_at_k.at(self.pass_at_k.n), 3),
                "ood_pass@1": round(self.ood_pass_at_k.at(1), 3),
                f"ood_pass@{self.ood_pass_at_k.n}":
                    round(self.ood_pass_at_k.at(self.ood_pass_at_k.n), 3)}


@dataclass(frozen=True)
class ArmsSettings:
    """The experiment; every field names what it does to the comparison."""

    grpo: TrainSettings = field(default_factory=lambda: TrainSettings(threads=1))  # RL arms
    sft: SFTOptions = field(default_factory=SFTOptions)   # both SFT phases (batch, lr)
    budget_tokens: int = 40_000       # per arm: generated + trained tokens
    few_traces: int = 32              # sft_rl: the traces its SFT phase sees
    few_steps: int = 8                # sft_rl: SFT steps on them before RL
    ood_knobs: dict | None = None     # the OOD split's task knobs; None: one more term
                                      # than training (the sum task's n_terms + 1)
    eval_examples: int = 200          # greedy held-out problems (both splits)
    pass_n: int = 64                  # samples per problem for pass@k
    pass_problems: int = 20           # problems for pass@k (both splits)
    temperature: float = 1.0          # pass@k sampling (the RL arms' own temperature)


def _spend(loop, budget: int, cost, bar) -> tuple[int, int, int]:
    """Step ``loop`` until ``budget`` tokens are spent; (steps, generated, trained)."""
    steps = generated = trained = 0
    while generated + trained < budget:
        m = loop.step()
        g, t = cost(m)
        generated, trained, steps = generated + g, trained + t, steps + 1
        bar.update(g + t)
    return steps, generated, trained


def run_arm(arm: str, a: ArmsSettings, *, seed: int, traces: list[dict], progress=None,
            verbose: bool = False) -> ArmResult:
    """Train one arm from the base model to the token budget, then evaluate it."""
    from tqdm.auto import tqdm

    s = replace(a.grpo, seed=seed)
    policy = load_policy(s.model, device=s.device, task=s.task.name, verbose=False)
    task = get_task(s.task.name, **s.task.knobs)
    bar = progress or tqdm(total=a.budget_tokens, desc=ARM_NAMES.get(arm, arm), unit="tok",
                           disable=not verbose)
    sft_settings = SFTSettings(model=s.model, task=s.task, sft=a.sft, seed=seed,
                               threads=s.threads, device=s.device)
    rl_cost = (lambda m: (m["generated_tokens"], m["generated_tokens"] * s.grpo.num_iterations))
    sft_cost = (lambda m: (0, m["trained_tokens"]))
    steps, generated, trained, teacher = {}, 0, 0, 0
    t0 = time.process_time()
    if arm in ("sft", "sft_rl"):
        few = arm == "sft_rl"
        loop = SFTTrainer(sft_settings, None, policy=policy, task=task, verbose=False,
                          traces=traces[:a.few_traces] if few else traces)
        if few:                                       # a fixed number of steps, then RL
            n, g, t = 0, 0, 0
            for _ in range(a.few_steps):
                m = loop.step()
                n, t = n + 1, t + m["trained_tokens"]
                bar.update(m["trained_tokens"])
        else:
            n, g, t = _spend(loop, a.budget_tokens, sft_cost, bar)
        steps["sft"], trained = n, trained + t
        teacher = sum(len(policy.tokenizer(r["completion"])["input_ids"])
                      for r in loop.seen_traces())
    if arm in ("rl", "sft_rl"):
        loop = GRPOTrainer(s, None, policy=policy, task=task, verbose=False)
        n, g, t = _spend(loop, a.budget_tokens - trained, rl_cost, bar)
        steps["rl"], generated, trained = n, generated + g, trained + t
    cpu = time.process_time() - t0
    if progress is None:
        bar.close()
    return _evaluated(arm, a, policy, task, seed=seed, steps=steps, generated=generated,
                      trained=trained, teacher=teacher, cpu=cpu)


def _evaluated(arm, a: ArmsSettings, policy, task, *, seed, steps, generated, trained, teacher,
               cpu) -> ArmResult:
    ood = ood_task(a)
    n_tok = a.grpo.grpo.max_new_tokens
    acc = [evaluate_policy(policy, t, n=a.eval_examples, max_new_tokens=n_tok)["accuracy"]
           for t in (task, ood)]
    pk = [sample_pass_at_k(policy, t, n=a.pass_n, problems=a.pass_problems,
                           temperature=a.temperature, max_new_tokens=n_tok, seed=seed,
                           label=f"{ARM_NAMES[arm]} ({where})")
          for t, where in ((task, "in distribution"), (ood, "OOD"))]
    return ArmResult(arm, seed, steps, generated, trained, teacher, cpu, acc[0], acc[1], *pk)


def ood_task(a: ArmsSettings):
    """The out-of-distribution split: the training task with ``ood_knobs`` (its test rows)."""
    t: TaskSettings = a.grpo.task
    knobs = a.ood_knobs
    if knobs is None:
        if t.name != "sum":
            raise SettingsError(f"task {t.name!r}: say what out of distribution means for it "
                                "with ArmsSettings(ood_knobs={...}).")
        knobs = {"n_terms": t.knobs.get("n_terms", 3) + 1}
    return get_task(t.name, n_train=1, n_test=max(a.eval_examples, a.pass_problems),
                    **{**t.knobs, **knobs})


def compare_arms(a: ArmsSettings | None = None, *, seeds=(0,), arms=ARMS,
                 verbose: bool = True) -> list[ArmResult]:
    """The base model once, then every arm for every seed, each from the base and on the same
    budget. Returns one ``ArmResult`` per (arm, seed), base first (its ``seed`` is the first)."""
    from tqdm.auto import tqdm

    a = a or ArmsSettings()
    s = a.grpo
    task = get_task(s.task.name, **s.task.knobs)
    traces = teacher_traces(task)                       # the same prompts RL trains on
    base = load_policy(s.model, device=s.device, task=s.task.name, verbose=False)
    out = [_evaluated("base", a, base, task, seed=seeds[0], steps={}, generated=0, trained=0,
                      teacher=0, cpu=0.0)]
    bar = tqdm(total=a.budget_tokens * len(arms) * len(seeds), desc="arms", unit="tok",
               disable=not verbose, dynamic_ncols=True)
    for seed in seeds:
        for arm in arms:
            bar.set_postfix(arm=arm, seed=seed, refresh=False)
            out.append(run_arm(arm, a, seed=seed, traces=traces, progress=bar))
    bar.close()
    return out


def arms_table(results: list[ArmResult]) -> list[dict]:
    """Rows for a table: every (arm, seed), then each arm's mean over seeds."""
    import statistics

    rows = [r.as_row() for r in results]
    by_arm: dict[str, list[dict]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(r)
    for arm, group in by_arm.items():
        if len(group) > 1:
            mean = {k: round(statistics.fmean(g[k] for g in group), 3) for k in group[0]
                    if isinstance(group[0][k], (int, float)) and k != "seed"}
            mean["tokens"] = round(mean["tokens"])
            mean["teacher_tokens"] = round(mean["teacher_tokens"])
            steps = " / ".join(dict.fromkeys(g["steps"] for g in group))   # each seed's, once
            rows.append({"arm": arm, "seed": "mean", "steps": steps, **mean})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """``rows`` (e.g. ``arms_table``'s) as a markdown table, columns in the first row's order."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def plot_arms(results: list[ArmResult], *, seed: int | None = None):
    """Left: pass@k in distribution; right: out of distribution (one seed's curves)."""
    import matplotlib.pyplot as plt

    seed = results[0].seed if seed is None else seed
    picked = [r for r in results if r.seed == seed]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_pass_at_k([replace(r.pass_at_k, label=ARM_NAMES[r.arm]) for r in picked], ax=ax1,
                   title="held-out, in distribution")
    plot_pass_at_k([replace(r.ood_pass_at_k, label=ARM_NAMES[r.arm]) for r in picked], ax=ax2,
                   title="held-out, out of distribution")
    fig.tight_layout()
    return fig


__all__ = ["ARMS", "ArmResult", "ArmsSettings", "arms_table", "compare_arms", "markdown_table",
           "ood_task",
           "plot_arms", "run_arm"]
