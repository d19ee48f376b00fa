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
import math
import types
import typing
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
    mask_environment_tokens: bool = True  # environment tokens (tool results, feedback) get no
                                    # loss/KL/entropy; False = Search-R1's unmasked ablation


class _RunSettings:
    """Methods every run's settings share (GRPO's ``TrainSettings``, ``SFTSettings``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Settings from ``to_dict``'s shape (a run's settings.json); missing fields take their
        defaults, unknown ones raise ``SettingsError`` (a typo must not be ignored)."""
        return _from_dict(cls, data, "settings")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass(frozen=True)
class TrainSettings(_RunSettings):
    model: ModelSettings = field(default_factory=ModelSettings)
    task: TaskSettings = field(default_factory=TaskSettings)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    steps: int = 150                # optimiser steps
    seed: int = 0
    checkpoint_every: int = 25      # steps between checkpoints (resume point)
    eval_examples: int = 200        # held-out problems for accuracy before/after (greedy)
    eval_every: int = 10            # also evaluate every N steps (0 = only before/after): RL
                                    # moves held-out accuracy within the first few steps
    eval_every_examples: int = 100  # held-out problems in those evaluations (the first N)
    device: str | None = None       # None: cuda if present, else cpu
    threads: int | None = None      # torch CPU threads (None: leave torch's default)


@dataclass(frozen=True)
class SFTOptions:
    batch_size: int = 16            # traces per optimiser step
    learning_rate: float = 1e-4     # tiny full fine-tune; LoRA on real models ~1e-5..1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_new_tokens: int = 48        # evaluation's completion budget (the same as GRPO's)
    traces: str | None = None       # jsonl of {"prompt", "completion"} rows; None = the task's
                                    # own teacher (the synthetic tasks' worked solutions)
    max_traces: int | None = None   # train on the first N traces only (SFT->RL: "a few")


@dataclass(frozen=True)
class SFTSettings(_RunSettings):
    """Supervised fine-tuning on (prompt, completion) traces; run folder as GRPO's."""

    model: ModelSettings = field(default_factory=ModelSettings)
    task: TaskSettings = field(default_factory=TaskSettings)
    sft: SFTOptions = field(default_factory=SFTOptions)
    steps: int = 60                 # optimiser steps (an epoch is len(traces) / batch_size)
    seed: int = 0
    checkpoint_every: int = 20      # steps between checkpoints (resume point)
    eval_examples: int = 200        # held-out problems for accuracy before/after (greedy)
    eval_every: int = 0             # also evaluate every N steps (0 = only before/after)
    eval_every_examples: int = 100  # held-out problems in those evaluations (the first N)
    device: str | None = None       # None: cuda if present, else cpu
    threads: int | None = None      # torch CPU threads (None: leave torch's default)


def _from_dict(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise SettingsError(f"{where} must be a JSON object of named fields, got "
                            f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; known: "
                            f"{', '.join(sorted(names))}.")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        kwargs[name] = (_from_dict(hint, value, f"{where}.{name}")
                        if dataclasses.is_dataclass(hint) else value)
    return cls(**kwargs)


# Fields a resumed run may change: how long it runs and where, not what it learns.
RESUMABLE = ("steps", "checkpoint_every", "eval_every", "eval_every_examples", "device", "threads")


def resumed_settings(saved: dict, asked: "TrainSettings | SFTSettings | None" = None, *,
                     kind: type = TrainSettings):
    """The settings a resumed run continues with.

    saved: the run's settings.json. asked: settings given for the resume (None: the run's own).
    Only the fields in ``RESUMABLE`` may differ (more steps, another device, ...); any other
    difference raises ``SettingsError`` naming it, since the checkpoint's optimiser state, data
    position and logged history belong to the run's own settings.
    """
    run = (type(asked) if asked is not None else kind).from_dict(saved)
    if asked is None:
        return run
    old, new = _flat(run.to_dict()), _flat(asked.to_dict())
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    conflicts = [f"{k}={new.get(k)!r} (the run has {old.get(k)!r})"
                 for k in changed if k not in RESUMABLE]
    if conflicts:
        raise SettingsError(
            f"a resumed run keeps its settings, but these differ: {'; '.join(conflicts)}. Only "
            f"{', '.join(RESUMABLE)} can change on resume; for anything else start a new run "
            "with --out.")
    return asked


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _type_problems(obj, prefix: str = "") -> list[str]:
    """A line for every field of ``obj`` (recursively) whose value is not of its declared type."""
    problems = []
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(hint):
            if isinstance(value, hint):
                problems += _type_problems(value, f"{prefix}{f.name}.")
            else:
                problems.append(f"{prefix}{f.name}: expected {hint.__name__}, got "
                                f"{type(value).__name__}.")
            continue
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if not any(_is_a(value, k) for k in kinds):
            want = " or ".join("None" if k is type(None) else getattr(k, "__name__", str(k))
                               for k in kinds)
            problems.append(f"{prefix}{f.name}={value!r}: must be {want}, not "
                            f"{type(value).__name__}.")
    return problems


def _is_a(value, kind) -> bool:
    kind = typing.get_origin(kind) or kind
    if kind is type(None):
        return value is None
    if kind is float:                                   # an int is a fine float, a bool is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _float_problems(obj) -> list[str]:
    """A line for every float field that is NaN or infinite (they poison the run steps later)."""
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            problems += _float_problems(value)
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{f.name}={value}: must be a finite number.")
    return problems


def validate_settings(s: "TrainSettings | SFTSettings") -> None:
    """Raise ``SettingsError`` listing every problem (and the fix) before any work starts.

    Every field is checked: its type, then its value (NaN and infinities are refused
    everywhere), then how fields combine (batch sizes, tier and device, model and task).
    """
    problems = _type_problems(s)
    if problems:                                         # value checks need the right types
        _raise(problems)
    problems = _float_problems(s)
    if problems:                                         # NaN fails every comparison below too
        _raise(problems)
    problems += _sft_problems(s.sft) if isinstance(s, SFTSettings) else _grpo_problems(s.grpo)
    problems += _model_problems(s.model)
    if s.steps < 1:
        problems.append(f"steps={s.steps}: must be at least 1.")
    if not 0 <= s.seed < 2**63:
        problems.append(f"seed={s.seed}: must be between 0 and 2**63-1.")
    if s.checkpoint_every < 1:
        problems.append(f"checkpoint_every={s.checkpoint_every}: must be at least 1.")
    if s.eval_examples < 1:
        problems.append(f"eval_examples={s.eval_examples}: held-out accuracy needs at least 1 "
                        "problem (200 is the default).")
    if s.eval_every < 0:
        problems.append(f"eval_every={s.eval_every}: must be 0 (only before/after) or more.")
    if s.eval_every_examples < 1:
        problems.append(f"eval_every_examples={s.eval_every_examples}: evaluations during "
                        "training need at least 1 held-out problem.")
    if s.threads is not None and s.threads < 1:
        problems.append(f"threads={s.threads}: must be at least 1 (or unset for torch's default).")
    device_problems = _device_problems(s.device)
    problems += device_problems
    m = s.model
    if m.tier in ("unsloth", "bnb4") and m.lora is False:
        problems.append(f"tier={m.tier!r} trains LoRA adapters on frozen 4-bit weights: set lora=True "
                        "(or leave it unset), or use tier='plain' for full fine-tuning.")
    elif m.tier in ("unsloth", "bnb4") and not device_problems:
        from .models import choose_tier, resolve_device  # late import: pulls in torch

        try:
            choose_tier(m, resolve_device(s.device))
        except SettingsError as exc:
            problems.append(str(exc))
    problems += _task_problems(s.task, tiny=m.model == "tiny")
    if isinstance(s, SFTSettings) and s.sft.traces is None and ":" in s.task.name:
        problems.append(f"task={s.task.name!r} has no teacher of its own: give traces=FILE.jsonl "
                        "(--traces) holding the completions to imitate.")
    if problems:
        _raise(problems)


def _raise(problems: list[str]) -> None:
    if len(problems) == 1:
        raise SettingsError(f"Settings cannot work: {problems[0]}")
    raise SettingsError("Settings cannot work:\n  - " + "\n  - ".join(problems))


def _grpo_problems(g: GRPOSettings) -> list[str]:
    problems = []
    if g.group_size < 2:
        problems.append(
            f"group_size={g.group_size}: GRPO compares completions of the same prompt, so it needs "
            "at least 2 (use 4-16).")
    if g.prompts_per_step < 1:
        problems.append(f"prompts_per_step={g.prompts_per_step}: must be at least 1.")
    total = g.group_size * g.prompts_per_step
    if g.group_size >= 2 and g.prompts_per_step >= 1:    # else the sizes below mean nothing
        if g.generation_batch_size < 1 or (g.generation_batch_size % g.group_size
                                           and total % g.generation_batch_size):
            problems.append(
                f"generation_batch_size={g.generation_batch_size} splits groups: make it a "
                f"multiple of group_size={g.group_size} or a divisor of "
                f"group_size*prompts_per_step={total}.")
        if g.micro_batch_size < 1 or total % g.micro_batch_size:
            problems.append(
                f"micro_batch_size={g.micro_batch_size} does not divide the {total} completions "
                f"per step (group_size*prompts_per_step); pick a divisor of {total}.")
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
    problems += _optimizer_problems(g)
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
    return problems


def _optimizer_problems(o: "GRPOSettings | SFTOptions") -> list[str]:
    """Learning rate, weight decay and gradient clipping (GRPO and SFT share them)."""
    problems = []
    if o.learning_rate <= 0:
        problems.append(f"learning_rate={o.learning_rate}: must be positive (1e-4 for the tiny "
                        "model, ~1e-5..5e-5 for LoRA on a real one).")
    if o.weight_decay < 0:
        problems.append(f"weight_decay={o.weight_decay}: cannot be negative (0 is the default).")
    if o.max_grad_norm <= 0:
        problems.append(f"max_grad_norm={o.max_grad_norm}: must be positive (1.0 is usual; a large "
                        "value such as 1e9 turns clipping off).")
    return problems


def _sft_problems(o: SFTOptions) -> list[str]:
    problems = []
    if o.batch_size < 1:
        problems.append(f"batch_size={o.batch_size}: must be at least 1 trace per step.")
    problems += _optimizer_problems(o)
    if o.max_new_tokens < 1:
        problems.append(f"max_new_tokens={o.max_new_tokens}: must be at least 1.")
    if o.max_traces is not None and o.max_traces < 1:
        problems.append(f"max_traces={o.max_traces}: use at least 1 trace (None = all).")
    if o.traces is not None:
        path = Path(o.traces).expanduser()
        if not path.is_file():
            why = "is a folder" if path.is_dir() else "no such file"
            problems.append(f"traces={o.traces!r}: {why}; give a jsonl file with one "
                            "{\"prompt\": ..., \"completion\": ...} object per line.")
    return problems


DTYPES = ("auto", "float32", "bfloat16", "float16")


def _model_problems(m: ModelSettings) -> list[str]:
    problems = []
    if m.tier not in TIERS:
        problems.append(f"tier={m.tier!r}: choose one of {', '.join(TIERS)}.")
    if m.lora_r < 1:
        problems.append(f"lora_r={m.lora_r}: must be at least 1.")
    if m.lora_alpha <= 0:
        problems.append(f"lora_alpha={m.lora_alpha}: must be positive (LoRA scale = alpha / r; "
                        "usually 2 * lora_r).")
    if not 0 <= m.lora_dropout < 1:
        problems.append(f"lora_dropout={m.lora_dropout}: must be in [0, 1).")
    if m.dtype not in DTYPES:
        problems.append(f"dtype={m.dtype!r}: choose one of {', '.join(DTYPES)}.")
    if m.max_seq_length < 1:
        problems.append(f"max_seq_length={m.max_seq_length}: must be at least 1.")
    if not m.model.strip():
        problems.append("model='': give 'tiny', a hub id or a local model folder.")
    elif m.model != "tiny":
        path = Path(m.model).expanduser()
        looks_local = m.model.startswith((".", "/", "~")) or path.exists()
        if looks_local and not (path / "config.json").exists():
            problems.append(
                f"model={m.model!r}: no such model folder (expected a config.json inside). Give a "
                "folder saved with save_pretrained, a hub id such as 'Qwen/Qwen2.5-0.5B-Instruct', "
                "or 'tiny' for the embedded model.")
    return problems


def _device_problems(device: str | None) -> list[str]:
    if device is None:
        return []
    import torch  # late import: settings stay importable without torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return [f"device={device!r}: unknown; use 'cpu', 'cuda' or 'cuda:N' (or leave it unset: "
                "cuda if present, else cpu)."]
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return [f"device={device!r}: this machine has no CUDA GPU that torch "
                    f"{torch.__version__} can use; use device='cpu' or leave it unset."]
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return [f"device={device!r}: there are only {torch.cuda.device_count()} CUDA "
                    f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})."]
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            return [f"device={device!r}: no Apple GPU (MPS) here; use device='cpu'."]
    elif dev.type != "cpu":
        return [f"device={device!r}: the workbench runs on 'cpu' or 'cuda' ('cuda:N')."]
    return []


def _task_problems(t: TaskSettings, *, tiny: bool) -> list[str]:
    from .tasks import TASKS  # late import: tasks pulls in datasets

    kind, _, file = t.name.partition(":")
    sizes = {k: t.knobs[k] for k in ("n_train", "n_test") if k in t.knobs}
    knobs = {k: v for k, v in t.knobs.items() if k not in sizes}
    problems = [f"task knob {k}={v!r}: must be a whole number >= 1." for k, v in sizes.items()
                if not _is_a(v, int) or v < 1]
    if t.name in TASKS:
        try:
            TASKS[t.name](**knobs)
        except (TypeError, ValueError) as exc:
            problems.append(f"task knobs {t.knobs!r} do not fit task {t.name!r}: {exc}.")
    elif kind in _FILE_KNOBS and file:
        path = Path(file).expanduser()
        if not path.is_file():
            problems.append(f"task={t.name!r}: {'is a folder' if path.is_dir() else 'no such file'}"
                            f" {path}; give a jsonl file (one JSON object per line).")
        known = _FILE_KNOBS[kind]
        unknown = sorted(set(knobs) - set(known))
        if unknown:
            problems.append(f"task knobs {unknown}: unknown for a {kind} file; known: "
                            f"{', '.join(known)}.")
        fraction = knobs.get("test_fraction", 0.1)
        if not _is_a(fraction, float) or not 0 < fraction < 1:
            problems.append(f"task knob test_fraction={fraction!r}: must be between 0 and 1.")
        for name in ("limit", "n_public"):
            value = knobs.get(name)
            if value is not None and (not _is_a(value, int) or value < 1):
                problems.append(f"task knob {name}={value!r}: must be a whole number >= 1.")
        if tiny:
            problems.append(f"task={t.name!r}: the tiny model knows only the synthetic tasks "
                            f"({', '.join(sorted(TASKS))}); give --model a real model for a "
                            f"{kind} file.")
    else:
        problems.append(
            f"task={t.name!r}: unknown; choose one of {', '.join(sorted(TASKS))}, or "
            "'gsm8k:PATH.jsonl' / 'math:PATH.jsonl' / 'mbpp:PATH.jsonl' for a local file.")
    return problems


# a local file's kind -> the knobs its loader takes (tasks.load_jsonl_task, envs.code.load_mbpp_task)
_FILE_KNOBS = {"gsm8k": ("test_path", "test_fraction", "limit", "system_prompt"),
               "math": ("test_path", "test_fraction", "limit", "system_prompt"),
               "mbpp": ("test_path", "test_fraction", "limit", "n_public")}


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
                            f"tiny default (embedded 1.7M-parameter model {where}): {hint}")
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
