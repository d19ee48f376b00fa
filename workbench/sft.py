"""Supervised fine-tuning on (prompt, completion) traces -- "distillation" when a teacher wrote them.

Each step (numbers match notebook 08's sections):

1. take ``batch_size`` traces in a seeded order (the *data position* is checkpointed);
2. tokenize prompt and completion apart: the prompt through the chat template, exactly as
   sampling sees it, the completion plus the end token the model must learn to stop with;
3. cross-entropy on the completion tokens only (the prompt is context, ``labels`` -100),
   averaged over those tokens; clip gradients, step the optimiser;
4. record the loss and the tokens trained; checkpoint every N steps.

The run folder, checkpoints, exact resume, progress bar and held-out evaluation are GRPO's
(``workbench.trainer.TrainingLoop``): an SFT run is read, resumed and inspected the same way.

Where traces come from:

- ``teacher_traces(task)``: the synthetic tasks' programmatic solver writes a worked solution
  for every *training* prompt, and only those the task's own answer reward (the verifier that
  pays RL) accepts are kept. A solver is always right, so this "distillation" is SFT on gold
  traces -- a stronger teacher than any model, and free;
- ``load_traces(path)``: a jsonl file a user brings (e.g. a bigger model's samples on a GPU),
  one ``{"prompt": ..., "completion": ...}`` object per line (TRL's prompt-completion format;
  ``prompt`` is text or a chat list).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from .evals import answer_reward_of
from .rollouts import render_prompt
from .settings import SettingsError, SFTSettings
from .tasks import Task, TaskFileError, _json_kind, _read_jsonl, completion_text
from .trainer import TrainingLoop, run_from_cli, run_job


# ---------------------------------------------------------------------------------------------
# traces: a teacher's, or a file's
# ---------------------------------------------------------------------------------------------

def teacher_traces(task: Task, *, limit: int | None = None) -> list[dict]:
    """Worked solutions of the task's training prompts, kept only where the task's answer
    reward (the RL verifier) says they are right.

    Returns dicts ``{"prompt", "completion", "answer"}`` in the training split's order (the
    first ``limit`` prompts). Needs a synthetic task (one with a ``writer``)."""
    import json

    if task.writer is None:
        raise SettingsError(f"task {task.name!r} has no programmatic teacher: give a traces "
                            "file (load_traces / --traces).")
    rows = task.train.select(range(min(limit or len(task.train), len(task.train))))
    completions = [task.writer.solution(tuple(json.loads(r["problem"])), "worked")
                   for r in rows]
    answer_fn = answer_reward_of(task)
    ok = answer_fn(prompts=rows["prompt"], completions=completions, answer=rows["answer"])
    return [{"prompt": r["prompt"], "completion": c, "answer": r["answer"]}
            for r, c, s in zip(rows, completions, ok) if float(s or 0.0) >= 1.0]


def load_traces(path: str | Path) -> list[dict]:
    """Rows ``{"prompt", "completion"}`` of a jsonl file; a ``TaskFileError`` naming the line
    for anything else (``prompt``: non-empty text or a list of ``{"role", "content"}``)."""
    out = []
    for lineno, r in _read_jsonl(path):
        where = f"{path}:{lineno}"
        if "prompt" not in r or "completion" not in r:
            raise TaskFileError(f"{where}: a trace needs 'prompt' and 'completion', got "
                                f"{', '.join(sorted(map(str, r))) or 'no fields'}")
        prompt, completion = r["prompt"], r["completion"]
        chat = isinstance(prompt, list) and prompt and all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in prompt)
        if not (chat or (isinstance(prompt, str) and prompt.strip())):
            raise TaskFileError(f"{where}: 'prompt' must be non-empty text or a list of "
                                f"{{role, content}} messages, got {_json_kind(prompt)}")
        if isinstance(completion, list):
            completion = completion_text(completion)
        if not isinstance(completion, str) or not completion.strip():
            raise TaskFileError(f"{where}: 'completion' must be non-empty text, got "
                                f"{_json_kind(r['completion'])}")
        out.append({"prompt": prompt, "completion": completion,
                    **({"answer": str(r["answer"])} if "answer" in r else {})})
    return out


# ---------------------------------------------------------------------------------------------
# 2-3. tokens and the loss on the completion only
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SFTBatch:
    """Right-padded (B, T) tensors; ``labels`` is -100 on prompt and padding tokens."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor

    @property
    def completion_tokens(self) -> int:
        return int((self.labels != -100).sum())


def encode_traces(tokenizer, rows: list[dict], *, device=None) -> SFTBatch:
    """Prompt (chat template, as sampling renders it) + completion + end token, per row.

    Prompt and completion are tokenized apart, so a token never straddles the boundary and the
    labels mark exactly the completion's tokens and the end token (learning to stop)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token: SFT must teach the model to stop")
    seqs, labels = [], []
    for r in rows:
        p = tokenizer(render_prompt(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"]
        c = tokenizer(r["completion"], add_special_tokens=False)["input_ids"] + [eos]
        seqs.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = torch.full((len(rows), width), pad, dtype=torch.long)               # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, labels)):
        ids[i, :len(s)], mask[i, :len(s)], lab[i, :len(s)] = (torch.tensor(s), 1, torch.tensor(l))
    return SFTBatch(ids.to(device), mask.to(device), lab.to(device))


def sft_loss(model, batch: SFTBatch) -> Tensor:
    """Mean next-token cross-entropy over the completion tokens of ``batch`` (a scalar).

    Every completion token weighs the same (long traces count more than short ones), as in
    TRL's SFTTrainer with ``completion_only_loss``."""
    logits = model(input_ids=batch.input_ids,
                   attention_mask=batch.attention_mask).logits[:, :-1]       # (B, T-1, V)
    target = batch.labels[:, 1:]                                            # (B, T-1)
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten(),
                                             ignore_index=-100)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------

class SFTTrainer(TrainingLoop):
    """SFT on traces, in GRPO's run folder with its checkpoints, resume and evaluation.

    ``traces``: rows to train on (default: ``settings.sft.traces``'s file, else the task's
    teacher); ``settings.sft.max_traces`` keeps the first N."""

    settings_type = SFTSettings
    label = "SFT"

    def __init__(self, settings: SFTSettings | None = None, out: str | Path | None = None, *,
                 traces: list[dict] | None = None, **kwargs):
        self._given = traces
        super().__init__(settings, out, **kwargs)

    def _data(self) -> list[dict]:
        o = self.settings.sft
        rows = (self._given if self._given is not None
                else load_traces(o.traces) if o.traces else teacher_traces(self.task))
        rows = rows[:o.max_traces] if o.max_traces else rows
        if not rows:
            raise SettingsError("no traces to train on (the file or the teacher gave none).")
        return list(rows)

    def _optimizer_settings(self):
        return self.settings.sft

    def _eval_decoding(self) -> dict:
        return {"max_new_tokens": self.settings.sft.max_new_tokens}

    def _postfix(self, m: dict) -> dict:
        return {"loss": f"{m['loss']:.3f}", "epoch": f"{m['epoch']:.1f}"}

    def _summary_of_steps(self, h: list[dict], k: int) -> dict:
        return {"loss_first": sum(m["loss"] for m in h[:k]) / k if h else None,
                "loss_last": sum(m["loss"] for m in h[-k:]) / k if h else None,
                "traces": len(self.pool),
                "trained_tokens": sum(m["trained_tokens"] for m in h)}

    def _save_plot(self) -> None:
        import matplotlib.pyplot as plt

        from .plots import moving_average

        h, evals = self.history, self.run.evals()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([m["step"] for m in h], moving_average([m["loss"] for m in h], 5), label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("completion loss (mean of last 5)")
        acc = ax.twinx()
        acc.plot([e["step"] for e in evals], [e["accuracy"] for e in evals], "o", color="tab:red",
                 label="held-out accuracy")
        acc.set_ylim(0, 1)
        acc.set_ylabel("held-out accuracy (greedy)")
        fig.tight_layout()
        fig.savefig(self.run.path / "rewards.png", dpi=80)
        plt.close(fig)

    def seen_traces(self) -> list[dict]:
        """The distinct traces the steps have drawn so far (what a teacher had to write)."""
        n = len(self.pool)
        if self.data_position >= n:
            return list(self.pool)
        return [self.pool[i] for i in self._order(0)[:self.data_position]]

    def step(self) -> dict:
        o = self.settings.sft
        t0 = time.perf_counter()
        # 1. traces
        rows = self.next_rows(o.batch_size)
        # 2. tokens: prompt as context, completion (+ end token) as labels
        batch = encode_traces(self.tokenizer, rows, device=self.device)
        # 3. loss on the completion only, one optimiser step
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = sft_loss(self.model, batch)
        loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        # 4. record
        m = {"step": self.step_count, "loss": float(loss.detach()), "grad_norm": grad_norm,
             "trained_tokens": batch.completion_tokens,
             "sequence_tokens": int(batch.attention_mask.sum()),
             "step_seconds": round(time.perf_counter() - t0, 4),
             "epoch": self.data_position / len(self.pool), "data_position": self.data_position}
        self._record(m, [])
        return m


def train_sft(settings: SFTSettings | None = None, out: str | Path | None = None, *,
              resume: bool = False, steps: int | None = None, **kwargs) -> dict:
    """The whole SFT job (``python -m workbench sft``); ``resume``/``steps`` as GRPO's ``train``."""
    return run_job(SFTTrainer, settings, out, resume=resume, steps=steps, **kwargs)


# ---------------------------------------------------------------------------------------------
# command line: python -m workbench sft
# ---------------------------------------------------------------------------------------------

def add_cli(sub) -> None:
    """The ``sft`` subcommand's flags."""
    p = sub.add_parser("sft", help="supervised fine-tuning on traces (loss on completions only)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="new run folder")
    where.add_argument("--resume", metavar="DIR", help="resume the SFT run in DIR")
    p.add_argument("--traces", help="jsonl of {prompt, completion} rows (default: the task's "
                   "programmatic teacher, worked solutions checked by the verifier)")
    p.add_argument("--max-traces", type=int, help="train on the first N traces only")
    p.add_argument("--task", help="sum (default) | linear | ... | gsm8k:PATH | math:PATH | "
                   "mbpp:PATH")
    p.add_argument("--model", help="'tiny' (default), a local folder or a hub id")
    p.add_argument("--tier", choices=["auto", "unsloth", "bnb4", "plain"])
    p.add_argument("--lora", action="store_true", help="train LoRA adapters")
    p.add_argument("--steps", type=int, help="optimiser steps (default 60)")
    p.add_argument("--batch-size", type=int, help="traces per step (default 16)")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--max-new-tokens", type=int, help="evaluation's completion budget")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--eval-examples", type=int, help="held-out problems evaluated (default 200)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu | cuda | cuda:1 (default: cuda if present)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")


def settings_from_args(args, base: SFTSettings | None = None) -> SFTSettings:
    """SFTSettings from the flags given, over ``base`` or the defaults."""
    s = base or SFTSettings()
    m, o, t = s.model, s.sft, s.task
    if args.model:
        m = replace(m, model=args.model)
    if args.tier:
        m = replace(m, tier=args.tier)
    if args.lora:
        m = replace(m, lora=True)
    if args.task:
        t = replace(t, name=args.task)
    for flag, name in [("traces", "traces"), ("max_traces", "max_traces"),
                       ("batch_size", "batch_size"), ("lr", "learning_rate"),
                       ("max_new_tokens", "max_new_tokens")]:
        if getattr(args, flag) is not None:
            o = replace(o, **{name: getattr(args, flag)})
    if base is None and m.model != "tiny" and args.lr is None:
        o = replace(o, learning_rate=1e-5 if m.lora is False else 1e-4)   # full FT vs LoRA
    top = {f: getattr(args, f) for f in ("steps", "seed", "device", "threads",
                                          "checkpoint_every", "eval_examples")
           if getattr(args, f) is not None}
    return replace(s, model=m, task=t, sft=o, **top)


def cli_main(args) -> int:
    summary, out = run_from_cli(SFTTrainer, args, settings_from_args)
    print(f"held-out accuracy: {summary['accuracy_before']:.3f} -> "
          f"{summary['accuracy_after']:.3f} ({summary['steps']} steps on {summary['traces']} "
          f"traces, loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f})")
    print(f"run folder: {out}  (summary: {out}/summary.json)")
    return 0


__all__ = ["SFTBatch", "SFTTrainer", "encode_traces", "load_traces", "sft_loss",
           "teacher_traces", "train_sft"]
