"""Settings: one frozen dataclass per concern.

The tiny default and a real model differ in exactly one visible place: ``ModelSettings.model``.
``"tiny"`` builds (or loads from cache) the embedded few-million-parameter model; anything else is
a hub id or a local path and goes through the 4-bit / LoRA loader tiers.

Make variants with ``dataclasses.replace``::

    s = TrainSettings()
    s = replace(s, grpo=replace(s.grpo, group_size=4), steps=50)

``validate_settings`` checks everything before any work starts and says what to change.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
TIERS = ("auto", "unsloth", "bnb4", "plain")


class SettingsError(ValueError):
    """Settings that cannot work; the message says what to change."""


@dataclass(frozen=True)
class ModelSettings:
    model: str = "tiny"             # "tiny" = embedded model; else a hub id or a local folder
    tier: str = "auto"              # auto | unsloth | bnb4 | plain (see workbench.models)
    lora: bool | None = None        # None: full fine-tune for the tiny model, LoRA for real ones
    lora_r: int = 16                # LoRA rank: adapter capacity (and memory)
    lora_alpha: int = 32            # LoRA scale = alpha / r
    lora_dropout: float = 0.0
    dtype: str = "auto"             # auto: bf16 on a GPU that has it, else fp32
    gradient_checkpointing: bool = False  # trade compute for activation memory (real models)
    max_seq_length: int = 1024      # unsloth needs it up front


@dataclass(frozen=True)
class TaskSettings:
    name: str = "sum"               # see workbench.tasks.TASKS
    knobs: dict = field(default_factory=dict)  # difficulty knobs passed to get_task


@dataclass(frozen=True)
class GRPOSettings:
    group_size: int = 8             # completions per prompt (TRL: num_generations)
    prompts_per_step: int = 8       # distinct prompts per optimiser step
    generation_batch_size: int = 64  # completions sampled in one forward batch
    max_new_tokens: int = 48        # completion budget; longer = slower and more memory
    temperature: float = 1.0        # sampling temperature (also applied to training log-probs)
    top_p: float = 1.0
    learning_rate: float = 1e-4     # tiny full fine-tune default; LoRA on real models ~1e-5..5e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    loss_type: str = "dapo"         # grpo | bnpo | dr_grpo | dapo (TRL's names)
    scale_rewards: bool = True      # divide advantages by group std (False = Dr. GRPO)
    epsilon_low: float = 0.2        # lower clip of the policy ratio
    epsilon_high: float = 0.28      # upper clip (DAPO clip-higher; = epsilon_low for plain GRPO)
    beta: float = 0.0               # KL-to-reference weight (0 = no reference pass at all)
    num_iterations: int = 1         # optimiser passes per batch of completions (mu in GRPO)
    micro_batch_size: int = 64      # completions per forward/backward (gradient accumulation)
    max_turns: int | None = None    # model turns per episode; None = the task environment's own
    max_episode_tokens: int | None = None  # model + environment tokens after the prompt, per
                                    # episode; None = max_new_tokens * turns (1 turn: max_new_tokens)


@dataclass(frozen=True)
class TrainSettings:
    model: ModelSettings = field(default_factory=ModelSettings)
    task: TaskSettings = field(default_factory=TaskSettings)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    steps: int = 150                # optimiser steps
    seed: int = 0
    checkpoint_every: int = 25      # steps between checkpoints (resume point)
    eval_examples: int = 200        # held-out problems for accuracy before/after (greedy)
    eval_every: int = 0             # also evaluate every N steps (0 = only before/after)
    device: str | None = None       # None: cuda if present, else cpu
    threads: int | None = None      # torch CPU threads (None: leave torch's default)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSettings":
        data = dict(data)
        return cls(
            model=ModelSettings(**data.pop("model", {})),
            task=TaskSettings(**data.pop("task", {})),
            grpo=GRPOSettings(**data.pop("grpo", {})),
            **data,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def validate_settings(s: TrainSettings) -> None:
    """Raise ``SettingsError`` listing every problem (and the fix) before any work starts."""
    g, m = s.grpo, s.model
    problems: list[str] = []
    if g.group_size < 2:
        problems.append(
            f"group_size={g.group_size}: GRPO compares completions of the same prompt, so it needs "
            "at least 2 (use 4-16).")
    if g.prompts_per_step < 1:
        problems.append(f"prompts_per_step={g.prompts_per_step}: must be at least 1.")
    total = g.group_size * g.prompts_per_step
    if g.generation_batch_size < 1 or (g.generation_batch_size % g.group_size
                                       and total % g.generation_batch_size):
        problems.append(
            f"generation_batch_size={g.generation_batch_size} splits groups: make it a multiple of "
            f"group_size={g.group_size} or a divisor of group_size*prompts_per_step={total}.")
    if g.micro_batch_size < 1 or total % g.micro_batch_size:
        problems.append(
            f"micro_batch_size={g.micro_batch_size} does not divide the {total} completions per step "
            f"(group_size*prompts_per_step); pick a divisor of {total}.")
    if g.max_new_tokens < 1:
        problems.append(f"max_new_tokens={g.max_new_tokens}: must be at least 1.")
    if g.max_turns is not None and g.max_turns < 1:
        problems.append(f"max_turns={g.max_turns}: an episode has at least 1 model turn "
                        "(None = the environment's own limit).")
    if g.max_episode_tokens is not None and g.max_episode_tokens < 1:
        problems.append(f"max_episode_tokens={g.max_episode_tokens}: must be at least 1 "
                        "(None = max_new_tokens per model turn).")
    if g.temperature <= 0:
        problems.append(f"temperature={g.temperature}: GRPO needs sampling; use a value > 0 (e.g. 1.0).")
    if not 0 < g.top_p <= 1:
        problems.append(f"top_p={g.top_p}: must be in (0, 1].")
    if g.loss_type not in LOSS_TYPES:
        problems.append(f"loss_type={g.loss_type!r}: choose one of {', '.join(LOSS_TYPES)}.")
    if g.epsilon_low < 0 or g.epsilon_high < 0 or g.epsilon_low >= 1:
        problems.append(
            f"epsilon_low={g.epsilon_low}, epsilon_high={g.epsilon_high}: clip ranges must be >= 0 "
            "and epsilon_low < 1 (typical 0.2 / 0.28).")
    if g.beta < 0:
        problems.append(f"beta={g.beta}: the KL weight cannot be negative.")
    if g.num_iterations < 1:
        problems.append(f"num_iterations={g.num_iterations}: must be at least 1.")
    if g.learning_rate <= 0:
        problems.append(f"learning_rate={g.learning_rate}: must be positive.")
    if s.steps < 1:
        problems.append(f"steps={s.steps}: must be at least 1.")
    if s.checkpoint_every < 1:
        problems.append(f"checkpoint_every={s.checkpoint_every}: must be at least 1.")
    if s.eval_examples < 0:
        problems.append(f"eval_examples={s.eval_examples}: cannot be negative.")
    if m.tier not in TIERS:
        problems.append(f"tier={m.tier!r}: choose one of {', '.join(TIERS)}.")
    if m.lora_r < 1:
        problems.append(f"lora_r={m.lora_r}: must be at least 1.")
    if m.model != "tiny":
        path = Path(m.model).expanduser()
        looks_local = m.model.startswith((".", "/", "~")) or path.exists()
        if looks_local and not (path / "config.json").exists():
            problems.append(
                f"model={m.model!r}: no such model folder (expected a config.json inside). Give a "
                "folder saved with save_pretrained, a hub id such as 'Qwen/Qwen2.5-0.5B-Instruct', "
                "or 'tiny' for the embedded model.")
    if m.tier in ("unsloth", "bnb4") and m.lora is False:
        problems.append(f"tier={m.tier!r} trains LoRA adapters on frozen 4-bit weights: set lora=True "
                        "(or leave it unset), or use tier='plain' for full fine-tuning.")
    elif m.tier in ("unsloth", "bnb4"):
        from .models import choose_tier, resolve_device  # late import: pulls in torch

        try:
            choose_tier(m, resolve_device(s.device))
        except SettingsError as exc:
            problems.append(str(exc))
    from .tasks import TASKS  # late import: tasks pulls in datasets

    if s.task.name not in TASKS and not s.task.name.startswith(("gsm8k:", "math:")):
        problems.append(
            f"task={s.task.name!r}: unknown; choose one of {', '.join(sorted(TASKS))}, or "
            "'gsm8k:PATH.jsonl' / 'math:PATH.jsonl' for a local file.")
    if problems:
        raise SettingsError("Settings cannot work:\n  - " + "\n  - ".join(problems))


# =============================================================================================
# The notebooks' one visible decision: tiny default, or a real model on a GPU
# =============================================================================================

REAL_MODEL_EXAMPLE = "Qwen/Qwen2.5-0.5B-Instruct"


@dataclass(frozen=True)
class NotebookMode:
    """Which model a notebook runs and why (``notebook_mode`` decides and prints it)."""

    model: str              # "tiny" or the hub id / folder that will be loaded
    device: str             # "cpu" or "cuda"
    reason: str             # the printed line

    @property
    def tiny(self) -> bool:
        return self.model == "tiny"

    def model_settings(self):
        """``ModelSettings`` for this mode (tiny: full fine-tune; real: 4-bit LoRA)."""
        return ModelSettings(model=self.model)

    def train_settings(self, **top):
        """``TrainSettings`` sized for this mode; ``top`` replaces top-level fields (steps, ...).

        Tiny: the library defaults on one CPU thread (see ``notebook_mode``). Real model: a harder
        sum, longer completions, a LoRA learning rate and smaller micro-batches so a T4 holds it.
        """
        s = TrainSettings(model=self.model_settings())
        if self.tiny and self.device == "cpu":
            s = replace(s, threads=1)
        if not self.tiny:
            s = replace(s, task=TaskSettings(knobs={"n_terms": 6, "max_operand": 99}),
                        grpo=GRPOSettings(group_size=8, prompts_per_step=4,
                                          generation_batch_size=32, micro_batch_size=8,
                                          max_new_tokens=256, learning_rate=2e-5),
                        eval_examples=100)
        return replace(s, **top)


def notebook_mode(model: str = "tiny", *, verbose: bool = True) -> NotebookMode:
    """Decide the mode from the notebook's ``MODEL`` setting and print one line saying why.

    A real model (a hub id or a folder) runs only where a CUDA GPU is present; anywhere else the
    tiny default runs and the line says so. The tiny model on a CPU runs torch on one thread: its
    matrices are too small to gain from two, and on a shared machine two threads that wait for
    each other are several times slower. Also silences other libraries' download/loading
    progress bars, so a notebook shows only its own.
    """
    import torch

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:                                   # pragma: no cover
        pass
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else None
    if model == "tiny":
        hint = (f"set MODEL = {REAL_MODEL_EXAMPLE!r} to run a real model on this {gpu}" if cuda
                else "no CUDA GPU here, and MODEL = 'tiny'")
        where = "on the GPU" if cuda else "on the CPU, 1 torch thread"
        mode = NotebookMode("tiny", "cuda" if cuda else "cpu",
                            f"tiny default (embedded ~2M-parameter model {where}): {hint}")
    elif not cuda:
        mode = NotebookMode("tiny", "cpu", "tiny default (on the CPU, 1 torch thread): MODEL = "
                            f"{model!r} needs a CUDA GPU and none is present (on Colab: "
                            "Runtime > Change runtime type)")
    else:
        mode = NotebookMode(model, "cuda", f"{model} with 4-bit LoRA on {gpu}")
    if mode.tiny and mode.device == "cpu":
        torch.set_num_threads(1)
    if verbose:
        print(f"[workbench] mode: {mode.reason}")
    return mode
