"""Our task and rewards in TRL's ``GRPOTrainer``, logged as our run folder.

::

    python -m workbench trl-train --out runs/trl                     # tiny model, this CPU
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml \\
        -m workbench trl-train --out runs/q --model Qwen/Qwen2.5-1.5B-Instruct   # 8 GPUs

Three pieces, each usable alone:

- ``grpo_config(settings)``: our ``TrainSettings`` as a ``trl.GRPOConfig`` -- the README glossary
  as code (``group_size`` -> ``num_generations``, ``max_new_tokens`` -> ``max_completion_length``,
  ``epsilon_low`` -> ``epsilon``, ``scale_rewards=False`` -> ``"none"``, ...). The completions per
  optimiser step stay ``prompts_per_step * group_size`` whatever the number of processes: each
  process takes its share, in micro-batches of at most ``micro_batch_size``.
- ``model_kwargs(settings)``: the model id or folder plus TRL's own options for LoRA
  (``peft_config``) and 4-bit (``quantization_config``, on a GPU) -- no loader of ours in the way.
- ``RunFolderCallback``: after each generation, TRL's completions (prompt, completion, reward per
  function, advantage; gathered over all processes) become ``traces.jsonl`` rows and its logged
  metrics a ``metrics.jsonl`` row under our names, so ``TraceBrowser``, ``GroupInspector`` and
  ``TrainingDashboard`` read a TRL run like one of ours.

- ``episode_rollout(task, settings)``: a task with an environment (``--task code``) goes to TRL as
  its ``rollout_func``: each prompt TRL hands this process becomes one episode of our sampler
  (``workbench.rollouts.sample_episodes``, turns with the environment), returned as token ids,
  the sampled log-probs and ``env_mask`` -- our ``action_mask`` -- so TRL's loss, KL and entropy
  skip the environment's tokens. Reward functions then get what our engine gives them: the
  model's text of the episode as ``completions`` and the ``turns`` / ``final_info`` columns.
  A single-turn task keeps TRL's own generation. (TRL's other hook, ``environment_factory``,
  exposes an environment's methods as tools through the chat template's tool calling; ours
  are text environments -- ``reset`` / ``step`` -- so ``rollout_func`` is the hook that fits.)

``train_with_trl(settings, out)`` is the whole job behind ``python -m workbench trl-train``:
held-out accuracy before and after (greedy, the main process), TRL's training in between, and
``summary.json`` with a digest of every process's weights (equal digests: the processes stayed in
sync). The reward functions go to TRL as they are; the first is wrapped only to hand the prompt
text and gold answer to TRL's ``log_extra`` (its documented hook) so each trace row carries them.

What differs from our engine, on purpose: TRL shuffles prompts in its own order; its progress
bar is replaced by ours (same postfix). TRL writes its own checkpoints under ``RUN/trl/`` (resume
with TRL's ``resume_from_checkpoint``, not ``workbench train --resume``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from ..settings import SettingsError, TrainSettings

EXTRA_PROMPT, EXTRA_ANSWER, EXTRA_LENGTH = "wb_prompt", "wb_answer", "wb_length"  # log_extra
# multi-turn: columns our rollout_func adds (reward functions never see them) and logs per row
EXTRA_TEXT, EXTRA_ENV_TOKENS = "wb_completion", "wb_env_tokens"
EXTRA_TURNS, EXTRA_ENDED = "wb_turns", "wb_ended"
_PRIVATE = (EXTRA_TEXT, EXTRA_LENGTH, EXTRA_ENV_TOKENS)


# =============================================================================================
# settings -> GRPOConfig (the glossary as code)
# =============================================================================================

def world_size() -> int:
    """Processes in this launch (``accelerate launch`` / ``torchrun`` set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def batch_shape(settings: TrainSettings, processes: int) -> tuple[int, int]:
    """(per_device_train_batch_size, gradient_accumulation_steps) for ``processes`` processes.

    ``per_device * accumulation * processes`` = ``prompts_per_step * group_size``: one generation
    and one optimiser step, as in our engine. Raises ``SettingsError`` when the completions cannot
    be shared evenly.
    """
    g = settings.grpo
    total = g.prompts_per_step * g.group_size
    if processes < 1 or total % processes:
        raise SettingsError(
            f"{total} completions per step (prompts_per_step*group_size) cannot be shared by "
            f"{processes} processes: make prompts_per_step*group_size a multiple of {processes}.")
    share = total // processes
    per_device = max(d for d in range(1, min(share, g.micro_batch_size) + 1) if share % d == 0)
    return per_device, share // per_device


def grpo_config(settings: TrainSettings, *, output_dir: str | Path, processes: int | None = None,
                device: str | None = None, **overrides):
    """A ``trl.GRPOConfig`` doing what ``settings`` does in our engine.

    processes: how many will train (default: WORLD_SIZE; TRL reads the real number from the
    launch, so give another only to inspect a config). device: "cpu" or "cuda" (default: cuda
    when present). overrides: any GRPOConfig field, applied last (``use_vllm=True``, ...).
    Held equal: AdamW (0.9, 0.99), constant learning rate, no warm-up, no top-k, truncated
    completions kept in the loss -- as ``workbench.trainer``.
    """
    import torch
    from trl import GRPOConfig

    g, m = settings.grpo, settings.model
    processes = processes or world_size()
    per_device, accumulation = batch_shape(settings, processes)
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    bf16 = cuda and m.dtype in ("auto", "bfloat16") and torch.cuda.is_bf16_supported()
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), seed=settings.seed, use_cpu=not cuda, bf16=bf16, fp16=False,
        # one generation of prompts_per_step x group_size completions per optimiser step
        num_generations=g.group_size, per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation, num_iterations=g.num_iterations,
        max_steps=settings.steps * g.num_iterations, logging_steps=g.num_iterations,
        max_completion_length=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
        top_k=0,
        # the optimiser of workbench.trainer
        learning_rate=g.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.99, weight_decay=g.weight_decay,
        max_grad_norm=g.max_grad_norm,
        # the loss
        loss_type=g.loss_type, beta=g.beta, epsilon=g.epsilon_low, epsilon_high=g.epsilon_high,
        scale_rewards="group" if g.scale_rewards else "none", mask_truncated_completions=False,
        gradient_checkpointing=m.gradient_checkpointing,
        # bookkeeping: our callback logs; TRL keeps its checkpoints in output_dir
        save_strategy="steps", save_steps=settings.checkpoint_every * g.num_iterations,
        save_total_limit=2, report_to="none", log_completions=False, disable_tqdm=True,
        dataloader_num_workers=0, ddp_find_unused_parameters=False,
        model_init_kwargs={"dtype": "bfloat16" if bf16 else "float32"},
    )
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


def model_kwargs(settings: TrainSettings, *, device: str | None = None,
                 verbose: bool = True) -> dict:
    """``GRPOTrainer`` keyword arguments for the model: ``model`` (id or folder),
    ``processing_class``, and TRL's own ``peft_config`` / ``quantization_config``.

    The tiny model is full fine-tuned in fp32 (4-bit would save nothing at 2M parameters). A real
    model trains LoRA (``lora_r`` / ``lora_alpha`` on every projection); on a GPU with
    bitsandbytes its base is loaded in 4-bit NF4 (QLoRA) unless ``tier="plain"``.
    """
    import torch
    from transformers import AutoTokenizer

    m = settings.model
    path = m.model
    if path == "tiny":
        from ..tasks import TASKS
        from ..tiny import ensure_tiny_model, tiny_spec_for

        if settings.task.name not in TASKS:
            raise SettingsError(f"the tiny model knows only the synthetic tasks {sorted(TASKS)}; "
                                f"for {settings.task.name!r} give --model a real model.")
        path = str(ensure_tiny_model(tiny_spec_for(settings.task.name), verbose=verbose))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"could not load the tokenizer of {m.model!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out: dict[str, Any] = {"model": path, "processing_class": tokenizer}
    lora = m.lora if m.lora is not None else m.model != "tiny"
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if lora:
        from peft import LoraConfig

        out["peft_config"] = LoraConfig(
            r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, bias="none",
            task_type="CAUSAL_LM", target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"])
    if lora and cuda and m.tier in ("auto", "bnb4", "unsloth"):
        from transformers import BitsAndBytesConfig

        out["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    return out


def with_row_logging(reward_funcs) -> list[Callable]:
    """The reward functions as TRL calls them: same names, same scores.

    The first also passes each completion's prompt text, gold and token count to TRL's
    ``log_extra`` (and, for episodes, the model's text, ``turns`` and how each ended), so the
    trace rows carry them. For episodes from ``episode_rollout`` every function gets the model's
    text of the episode as ``completions`` (TRL's own decoding would include the environment's
    replies), as in our engine; the rollout's private columns are removed.
    """
    from ..tasks import completion_text
    from ..trainer import _prompt_text

    def wrap(fn, log: bool):
        @functools.wraps(fn)
        def scored(prompts, completions, log_extra=None, **columns):
            text, length, env_tokens = (columns.pop(k, None) for k in _PRIVATE)
            completions = completions if text is None else text
            if log and log_extra is not None:
                log_extra(EXTRA_PROMPT, [_prompt_text(p) for p in prompts])
                answers = columns.get("answer", [""] * len(prompts))
                log_extra(EXTRA_ANSWER, [str(a) for a in answers])
                if length is None and columns.get("completion_ids") is not None:
                    length = [len(ids) for ids in columns["completion_ids"]]
                if length is not None:
                    log_extra(EXTRA_LENGTH, length)
                if columns.get("turns") is not None:        # an episode: what the trace shows
                    log_extra(EXTRA_TEXT, [completion_text(c) for c in completions])
                    log_extra(EXTRA_TURNS, columns["turns"])
                    log_extra(EXTRA_ENDED, [f.get("ended") for f in columns["final_info"]])
                    log_extra(EXTRA_ENV_TOKENS, env_tokens)
            return fn(prompts=prompts, completions=completions, **columns)

        return scored

    return [wrap(fn, i == 0) for i, fn in enumerate(reward_funcs)]


# =============================================================================================
# our environments -> TRL's rollout_func
# =============================================================================================

def has_environment(task) -> bool:
    """Whether ``task`` runs episodes in an environment (else TRL's own generation serves)."""
    from ..envs import SingleTurnEnv

    return task.env is not SingleTurnEnv


def episode_tokens(task, settings: TrainSettings) -> int:
    """An episode's token budget after its prompt (model + environment), as our engine sets it:
    TRL's ``max_completion_length`` for such a task (``dr_grpo`` divides by it)."""
    from ..rollouts import episode_budget

    g = settings.grpo
    return episode_budget(g.max_new_tokens, g.max_turns or task.env().max_turns,
                          g.max_episode_tokens)


def episode_rollout(task, settings: TrainSettings) -> Callable[[list, Any], dict]:
    """TRL's ``rollout_func(prompts, trainer) -> dict`` running ``task``'s environment.

    TRL passes this process's prompts, each already repeated ``num_generations`` times
    (siblings adjacent); each becomes ONE episode of ``sample_episodes`` (group_size=1) on the
    policy as TRL unwraps it for generation (DDP / DeepSpeed ZeRO-3 gathered). Returns, per
    episode, lists: ``prompt_ids``, ``completion_ids`` (model and environment tokens after the
    prompt, as sampled -- nothing re-tokenised), ``logprobs`` (0 on environment tokens),
    ``env_mask`` (our ``action_mask``: 1 = sampled by the model; TRL trains on those only), and
    the columns reward functions receive: ``turns``, ``final_info`` and the private
    ``wb_completion`` / ``wb_length`` / ``wb_env_tokens`` that ``with_row_logging`` consumes.

    The environment's ``reset`` needs the whole dataset row, and TRL hands over only its
    prompt: the row is found by its prompt in ``task.train`` (rows sharing a prompt must agree
    on what the environment reads; the reward functions still get each row's own columns).
    Per turn ``max_new_tokens``; ``max_turns`` / ``max_episode_tokens`` as in our engine.
    """
    from ..rewards import reward_inputs
    from ..rollouts import sample_episodes

    g = settings.grpo
    rows_by_prompt: dict[str, dict] = {}

    def row_of(prompt) -> dict:
        if not rows_by_prompt:
            for row in task.train:
                rows_by_prompt.setdefault(_prompt_key(row["prompt"]), row)
        row = rows_by_prompt.get(_prompt_key(prompt))
        if row is None:
            raise ValueError("rollout_func was given a prompt that is not in the task's training "
                             "rows; the environment needs its row (pass the task's own dataset)")
        return row

    def rollout(prompts: list, trainer) -> dict:
        from trl.models import unwrap_model_for_generation

        rows = [row_of(p) for p in prompts]
        args = trainer.args
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=args.ds3_gather_for_generation
                                         ) as model:
            comps = sample_episodes(model, trainer.processing_class, rows, env=task.env,
                                    group_size=1, max_new_tokens=g.max_new_tokens,
                                    max_turns=g.max_turns,
                                    max_episode_tokens=g.max_episode_tokens,
                                    temperature=args.temperature, top_p=args.top_p,
                                    batch_size=g.generation_batch_size)
        _, completions, columns = reward_inputs(rows, comps)
        n = comps.lengths.tolist()                                  # (N,) model + environment
        model_tokens = comps.model_lengths.tolist()                 # (N,) model only
        return {
            "prompt_ids": [ids[m.bool()].tolist()
                           for ids, m in zip(comps.prompt_ids, comps.prompt_mask)],
            "completion_ids": [ids[:k].tolist() for ids, k in zip(comps.completion_ids, n)],
            "logprobs": [lp[:k].tolist() for lp, k in zip(comps.sample_logps, n)],
            "env_mask": [m[:k].tolist() for m, k in zip(comps.action_mask, n)],
            "turns": columns["turns"], "final_info": columns["final_info"],
            EXTRA_TEXT: completions, EXTRA_LENGTH: model_tokens,
            EXTRA_ENV_TOKENS: [k - a for k, a in zip(n, model_tokens)],
        }

    return rollout


def _prompt_key(prompt) -> str:
    return json.dumps(prompt, sort_keys=True, default=str)


# =============================================================================================
# TRL's logs -> our run folder
# =============================================================================================

_METRICS = {            # ours <- TRL's logged name
    "reward_mean": "reward", "reward_std": "reward_std", "completion_length":
    "completions/mean_length", "completion_length_max": "completions/max_length",
    "truncated_fraction": "completions/clipped_ratio", "kl": "kl", "entropy": "entropy",
    "clip_low": "clip_ratio/low_mean", "clip_high": "clip_ratio/high_mean",
    "clip_fraction": "clip_ratio/region_mean", "loss": "loss", "grad_norm": "grad_norm",
    "zero_std_fraction": "frac_reward_zero_std", "learning_rate": "learning_rate",
}


def metrics_row(logs: dict, traces: list[dict], *, step: int, step_seconds: float) -> dict:
    """One ``metrics.jsonl`` row (our names) from TRL's logged dict and this step's trace rows."""
    row: dict[str, Any] = {"step": step, "engine": "trl"}
    for ours, theirs in _METRICS.items():
        value = logs.get(theirs)
        row[ours] = float(value) if value is not None else (0.0 if ours == "kl" else None)
    for key, value in logs.items():                 # rewards/answer_reward/mean -> reward/answer/mean
        if key.startswith("rewards/") and key.count("/") == 2:
            _, fn, stat = key.split("/")
            row[f"reward/{_component(fn)}/{stat}"] = value
    answers = [t["components"].get("answer") for t in traces]
    answers = [a for a in answers if a is not None]
    row["accuracy"] = sum(a >= 1.0 for a in answers) / len(answers) if answers else None
    row["advantage_abs_mean"] = (sum(abs(t["advantage"]) for t in traces) / len(traces)
                                 if traces else None)
    episodes = [t for t in traces if t.get("turns") is not None]
    if episodes:                                    # as workbench.trainer.episode_metrics
        taken = [sum(x["role"] == "model" for x in t["turns"]) for t in episodes]
        row["turns_mean"], row["turns_max"] = sum(taken) / len(taken), max(taken)
        row["env_tokens"] = sum(t["env_tokens"] or 0 for t in episodes) / len(episodes)
    row["step_seconds"] = round(step_seconds, 4)
    tokens = (row["completion_length"] or 0.0) * len(traces)
    row["tokens_per_second"] = tokens / max(step_seconds, 1e-9)
    return row


def trace_rows_from_trl(logs: dict, *, step: int, group_size: int, reward_names: list[str],
                        weights: list[float], tokenizer=None) -> list[dict]:
    """``traces.jsonl`` rows from TRL's per-completion logs (``GRPOTrainer._logs``).

    logs: ``{"completion": [...], "rewards": {fn_name: [...]}, "advantages": [...],
    "extra": {"wb_prompt": [...], "wb_answer": [...]}}``, N completions gathered over all
    processes with siblings adjacent (TRL groups them that way to compute advantages).
    ``length``: the model's tokens (``wb_length``; else the text re-tokenised by ``tokenizer``);
    ``finished`` is not logged by TRL (None). Episodes (``wb_turns`` logged) show the model's
    text as ``completion`` and carry ``turns``, ``ended`` and ``env_tokens`` as in our engine.
    """
    import math

    completions = list(logs["completion"])
    extra = logs.get("extra", {})
    prompts = list(extra.get(EXTRA_PROMPT, [""] * len(completions)))
    answers = list(extra.get(EXTRA_ANSWER, [""] * len(completions)))
    lengths = list(extra.get(EXTRA_LENGTH, [None] * len(completions)))
    texts = list(extra.get(EXTRA_TEXT, [None] * len(completions)))
    turns = list(extra.get(EXTRA_TURNS, [None] * len(completions)))
    ended = list(extra.get(EXTRA_ENDED, [None] * len(completions)))
    env_tokens = list(extra.get(EXTRA_ENV_TOKENS, [None] * len(completions)))
    columns = [list(logs["rewards"][name]) for name in reward_names]
    advantages = list(logs["advantages"])
    out = []
    for i, text in enumerate(completions):
        comps = {_component(name): (None if math.isnan(col[i]) else float(col[i]))
                 for name, col in zip(reward_names, columns)}
        total = sum(w * (v or 0.0) for w, v in zip(weights, comps.values()))
        out.append({
            "step": step, "group": i // group_size, "index": i % group_size,
            "prompt": prompts[i] or "", "completion": text if texts[i] is None else texts[i],
            "answer": answers[i] or "",
            "components": comps, "reward": total, "advantage": float(advantages[i]),
            "length": lengths[i] if lengths[i] is not None else (
                len(tokenizer(text, add_special_tokens=False).input_ids) if tokenizer else None),
            "finished": None,
        })
        if turns[i] is not None:                        # the whole episode, turn by turn
            out[-1].update(turns=turns[i], ended=ended[i], env_tokens=env_tokens[i])
    return out


def _component(fn_name: str) -> str:
    return fn_name[: -len("_reward")] if fn_name.endswith("_reward") else fn_name


class _RunFolderHooks:
    """Writes a TRL run as our run folder (main process only); shows our progress bar.

    ``RunFolderCallback`` is this class on top of transformers' ``TrainerCallback``, made on first
    use (``python -m workbench --help`` should not import transformers).

    ``attach(trainer)`` after building the ``GRPOTrainer``: the callback reads the trainer's
    completion logs, which ``TrainerCallback`` hooks are not given. ``history`` keeps the metric
    rows (a ``TrainingDashboard`` can be passed as ``on_metrics``).
    """

    def __init__(self, run, *, group_size: int, num_iterations: int = 1, progress: bool = True,
                 on_metrics: Callable[[dict], None] | None = None):
        self.run, self.group_size, self.num_iterations = run, group_size, num_iterations
        self.progress, self.on_metrics = progress, on_metrics
        self.history: list[dict] = []
        self.trainer = None
        self._bar = None
        self._seconds = 0.0
        self._t0 = None

    def attach(self, trainer) -> "RunFolderCallback":
        self.trainer = trainer
        trainer.add_callback(self)
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(ProgressCallback)    # ours shows reward/accuracy/length
        trainer.remove_callback(PrinterCallback)     # it prints every log dict
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=state.max_steps // self.num_iterations,
                             initial=state.global_step // self.num_iterations, desc="TRL GRPO",
                             unit="step", dynamic_ncols=True)

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._t0 is not None:
            self._seconds += time.perf_counter() - self._t0

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "reward" not in logs or not state.is_world_process_zero:
            return
        step = state.global_step // self.num_iterations     # our step: one generation
        t = self.trainer
        traces = trace_rows_from_trl(
            {"completion": t._logs["completion"], "rewards": t._logs["rewards"],
             "advantages": t._logs["advantages"], "extra": t._logs["extra"]},
            step=step, group_size=self.group_size, reward_names=list(t.reward_func_names),
            weights=[float(w) for w in t.reward_weights], tokenizer=t.processing_class)
        row = metrics_row(logs, traces, step=step, step_seconds=self._seconds)
        self._seconds = 0.0
        self.history.append(row)
        if self.run is not None:
            self.run.append("traces", traces)
            self.run.append("metrics", [row])
        if self._bar is not None:
            self._bar.update(1)
            acc = row["accuracy"]
            self._bar.set_postfix(reward=f"{row['reward_mean']:.2f}",
                                  acc=f"{acc:.2f}" if acc is not None else "-",
                                  len=f"{row['completion_length']:.0f}", refresh=False)
        if self.on_metrics is not None:
            self.on_metrics(row)

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def __getattr__(name: str):
    if name == "RunFolderCallback":
        from transformers import TrainerCallback

        cls = type("RunFolderCallback", (_RunFolderHooks, TrainerCallback),
                   {"__doc__": _RunFolderHooks.__doc__, "__module__": __name__})
        globals()["RunFolderCallback"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# =============================================================================================
# the whole job
# =============================================================================================

def parameter_digest(model) -> str:
    """SHA-256 (first 16 hex) of every trainable parameter, in name order: equal digests on two
    processes mean equal weights, bit for bit."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def build_trainer(settings: TrainSettings, out: str | Path | None = None, *, task=None,
                  overwrite: bool = False, verbose: bool = True, progress: bool = True,
                  on_metrics: Callable[[dict], None] | None = None, **config_overrides):
    """(``trl.GRPOTrainer``, ``RunFolderCallback``) for ``settings``; nothing trained yet.

    out: our run folder (created by the main process); None keeps the rows in
    ``callback.history`` only. task: a ``Task`` (default: ``get_task(settings.task...)``).
    A task with an environment trains through ``episode_rollout`` (TRL's ``rollout_func``) and
    its episode token budget is TRL's ``max_completion_length``.
    """
    import warnings

    import torch
    from trl import GRPOTrainer

    from ..runs import Run
    from ..settings import validate_settings
    from ..tasks import get_task

    validate_settings(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    task = task or get_task(settings.task.name, **settings.task.knobs)
    extra: dict[str, Any] = {}
    if has_environment(task):       # episodes: our sampler inside TRL, environment tokens masked
        if config_overrides.get("use_vllm"):
            raise SettingsError(f"task {task.name!r} runs episodes with an environment, which "
                                "trl-train samples with our sampler, not vLLM: drop --vllm.")
        extra["rollout_func"] = episode_rollout(task, settings)
        config_overrides = {"max_completion_length": episode_tokens(task, settings),
                            **config_overrides}
    rank = int(os.environ.get("RANK", "0"))
    run = None
    if out is not None and rank == 0:
        run = Run.create(out, settings.to_dict(), overwrite=overwrite)
    output_dir = Path(out) / "trl" if out is not None else Path(
        os.environ.get("TMPDIR", "/tmp")) / f"wb-trl-{os.getpid()}"
    config = grpo_config(settings, output_dir=output_dir, device=settings.device,
                         **{"reward_weights": list(task.reward_weights), **config_overrides})
    model = model_kwargs(settings, device=settings.device, verbose=verbose and rank == 0)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # TRL's notes on settings we chose on purpose
        trainer = GRPOTrainer(args=config, reward_funcs=with_row_logging(task.reward_funcs),
                              train_dataset=task.train, **model, **extra)
    callback = __getattr__("RunFolderCallback")(run, group_size=settings.grpo.group_size,
                                 num_iterations=settings.grpo.num_iterations,
                                 progress=progress and verbose, on_metrics=on_metrics)
    callback.attach(trainer)
    if run is not None:
        from ..runs import write_json_atomic

        write_json_atomic(run.path / "trl_config.json", json.loads(config.to_json_string()))
    return trainer, callback


def _policy_of(trainer):
    """Our ``Policy`` view of TRL's model (for ``evaluate_policy``)."""
    from ..models import Policy

    model = trainer.accelerator.unwrap_model(trainer.model)
    return Policy(model=model, tokenizer=trainer.processing_class, tier="trl",
                  reason="trained by trl.GRPOTrainer", lora=hasattr(model, "peft_config"),
                  device=next(model.parameters()).device, name=str(model.name_or_path))


def train_with_trl(settings: TrainSettings, out: str | Path, *, overwrite: bool = False,
                   verbose: bool = True, task=None, **config_overrides) -> dict:
    """The job behind ``python -m workbench trl-train``: evaluate, train with TRL, evaluate.

    Returns the summary (the same keys as ``workbench.trainer``'s, plus ``engine``,
    ``processes`` and ``parameter_digests``: one per process, equal when they stayed in sync).
    On every process; only the main one writes the run folder and evaluates.
    """
    from accelerate.utils import gather_object

    from ..runs import Run
    from ..settings import validate_settings
    from ..tasks import get_task
    from ..trainer import evaluate_policy

    validate_settings(settings)                 # a bad task name: one line, not a traceback
    batch_shape(settings, world_size())
    task = task or get_task(settings.task.name, **settings.task.knobs)
    trainer, callback = build_trainer(settings, out, task=task, overwrite=overwrite,
                                      verbose=verbose, **config_overrides)
    main = trainer.accelerator.is_main_process
    run = callback.run
    zero3 = trainer.is_deepspeed_enabled and getattr(
        trainer.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3
    evaluate = main and settings.eval_examples > 0 and not zero3   # ZeRO-3: shards on every rank
    g = settings.grpo

    def held_out(label):
        if not evaluate:
            return None
        return evaluate_policy(_policy_of(trainer), task, n=settings.eval_examples,
                               max_new_tokens=g.max_new_tokens, label=label,
                               step=trainer.state.global_step // g.num_iterations, run=run,
                               max_turns=g.max_turns, max_episode_tokens=g.max_episode_tokens)

    before_digest = parameter_digest(trainer.model)
    t0 = time.time()
    before = held_out("before")
    trainer.train()
    after = held_out("after")
    digests = gather_object([parameter_digest(trainer.model)])
    h = callback.history
    k = max(1, min(10, len(h) // 5))
    summary = {
        "engine": "trl", "model": settings.model.model, "task": task.name,
        "accuracy_before": before["accuracy"] if before else None,
        "accuracy_after": after["accuracy"] if after else None,
        "steps": trainer.state.global_step // g.num_iterations, "seconds": round(time.time() - t0, 2),
        "training_seconds": round(sum(m["step_seconds"] for m in h), 2),
        "mean_step_seconds": round(sum(m["step_seconds"] for m in h) / max(1, len(h)), 4),
        "reward_first": sum(m["reward_mean"] for m in h[:k]) / k if h else None,
        "reward_last": sum(m["reward_mean"] for m in h[-k:]) / k if h else None,
        "eval_examples": after["n"] if after else 0, "seed": settings.seed,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters()
                                    if p.requires_grad),
        "processes": trainer.accelerator.num_processes,
        "parameter_digest_before": before_digest, "parameter_digests": digests,
    }
    if run is not None:
        from ..plots import save_run_plot

        run.write_summary(summary)
        save_run_plot(Run.open(run.path), run.path / "rewards.png")
    return summary


# =============================================================================================
# command line: python -m workbench trl-train
# =============================================================================================

def add_cli(sub) -> None:
    """Register ``trl-train`` on the ``python -m workbench`` sub-parsers, after ``train``: it
    takes ``train``'s options (one definition of each) except ``--resume``, plus ``--vllm``."""
    train = sub.choices["train"]
    t = sub.add_parser("trl-train", help="the same task, rewards and environment in "
                       "trl.GRPOTrainer (also under `accelerate launch`), written as our run folder")
    t.add_argument("--out", required=True, help="new run folder")
    for action in train._actions:              # what argparse's parents= does
        if action.dest not in ("help", "out", "resume"):
            t._add_action(action)
    t.add_argument("--vllm", choices=["colocate", "server"],
                   help="generate with vLLM (GPU): in the training processes, or a "
                        "`trl vllm-serve` server (single-turn tasks only)")


def cli_main(args) -> int:
    """``python -m workbench trl-train``: train, print the result, return the exit code."""
    from ..__main__ import settings_from_args

    settings = settings_from_args(args)
    overrides = {"use_vllm": True, "vllm_mode": args.vllm} if args.vllm else {}
    summary = train_with_trl(settings, args.out, overwrite=args.overwrite, **overrides)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    acc = ("-" if summary["accuracy_before"] is None else
           f"{summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f}")
    sync = len(set(summary["parameter_digests"])) == 1
    print(f"held-out accuracy: {acc} ({summary['steps']} steps with trl.GRPOTrainer on "
          f"{summary['processes']} process(es), weights {'in sync' if sync else 'DIFFER'}, "
          f"{summary['mean_step_seconds']:.2f}s/step)")
    print(f"run folder: {args.out}  (`python -m workbench inspect {args.out}`)")
    return 0 if sync else 1


__all__ = ["grpo_config", "model_kwargs", "batch_shape", "with_row_logging", "has_environment",
           "episode_tokens", "episode_rollout", "RunFolderCallback",
           "metrics_row", "trace_rows_from_trl", "build_trainer", "train_with_trl",
           "parameter_digest", "add_cli", "cli_main"]
