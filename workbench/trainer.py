"""The GRPO training loop, written out step by step.

Each step (numbers match notebook 04's sections):

1. take ``prompts_per_step`` prompts in a seeded order (the *data position* is checkpointed);
2. sample ``group_size`` episodes per prompt (``workbench.rollouts``): one completion each, or
   turns with the task's environment (``workbench.envs``) until it says done;
3. score them with named reward components (``workbench.rewards``);
4. turn rewards into group-relative advantages (``workbench.grpo.group_advantages``);
5. for ``num_iterations`` passes: recompute log-probs with gradients, apply the clipped loss
   (``workbench.grpo.grpo_loss``) over the tokens the model sampled (environment tokens are
   context only) micro-batch by micro-batch, clip gradients, step the optimiser;
6. record metrics and every completion in the run folder; checkpoint every N steps.

``GRPOTrainer`` holds the state; ``train(settings, out)`` is the whole job the command line runs.
"""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from .evals import answer_reward_of
from .grpo import group_advantages, grpo_loss, token_entropy, token_logps, zero_std_groups
from .memory import (MemoryTracker, dtype_bytes_for, free_bytes_now, generation_chunk_size,
                     longest_prompt_tokens, preflight, release_cached_memory)
from .models import Policy, load_policy, load_policy_weights, save_policy_weights
from .rewards import accuracy_of, reward_inputs, score_completions
from .rollouts import Completions, episode_budget, sample_episodes
from .runs import ResumePoint, Run, RunStoreError, write_json_atomic
from .settings import SettingsError, TrainSettings, resumed_settings, validate_settings
from .tasks import Task, completion_text, get_task


class TrainingLoop:
    """The skeleton GRPO and SFT share: run folder, policy, optimiser, seeded data order,
    checkpoints with exact resume, progress bar, held-out evaluation and the summary.

    A subclass says what its steps draw from (``_data``: rows in a seeded order per epoch),
    which settings block holds its optimiser's numbers, and writes ``step()``; the rest is here,
    once. ``out=None`` keeps everything in memory (notebook experiments); with a folder every
    step is recorded and ``resume=True`` continues a killed run from its newest complete
    checkpoint. The loop holds the folder's writer lock until ``close()`` (or the process ends).
    """

    settings_type: type = TrainSettings
    label = "GRPO"                                      # the progress bar's name

    def __init__(self, settings=None, out: str | Path | None = None, *,
                 policy: Policy | None = None, task: Task | None = None, resume: bool = False,
                 overwrite: bool = False, callbacks: list[Callable[[dict], None]] | None = None,
                 verbose: bool = True):
        if resume and out is None:
            raise RunStoreError("resume=True needs the run folder: pass out=...")
        saved = Run.open(out).settings if resume else None
        settings = (resumed_settings(saved, settings, kind=self.settings_type) if resume
                    else settings or self.settings_type())
        validate_settings(settings)
        self.run: Run | None = None                     # locked before any work starts
        self._resume_at: ResumePoint | None = None
        if out is not None:
            self.run = Run.open(out, lock=True) if resume else Run.reserve(out, overwrite=overwrite)
        if resume:
            self._resume_at = self.run.resume_point()
            done = self._resume_at.state["step"] if self._resume_at.state else 0
            if settings.steps < done:
                raise SettingsError(f"steps={settings.steps}: the run is already at step {done}; "
                                    f"give at least {done}.")
        self.settings = settings
        self.verbose = verbose
        self.callbacks = list(callbacks or [])
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.task = task or get_task(settings.task.name, **settings.task.knobs)
        self.pool = self._data()                        # a bad data file fails before loading
        self.policy = policy or load_policy(settings.model, device=settings.device,
                                           task=self.task.name, verbose=verbose)
        self.model, self.tokenizer = self.policy.model, self.policy.tokenizer
        self.device = self.policy.device
        self.memory = MemoryTracker(self.device)        # records nothing without CUDA
        self._prepare()
        opt = self._optimizer_settings()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=opt.learning_rate,
            betas=(0.9, 0.99), weight_decay=opt.weight_decay)
        self.generator = torch.Generator(device="cpu")
        self.step_count = 0
        self.data_position = 0
        self._order_cache: tuple[int | None, list[int]] = (None, [])
        self.history: list[dict] = []
        self._warned: set[str] = set()
        torch.manual_seed(settings.seed)
        self.generator.manual_seed(settings.seed)
        if resume:
            self._restore(saved)
        elif self.run is not None:
            self.run.start(settings.to_dict(), overwrite=overwrite)

    # hooks a subclass fills in ------------------------------------------------------------------
    def _data(self):
        """The rows steps draw from (a ``datasets.Dataset`` or a list of dicts)."""
        return self.task.train

    def _prepare(self) -> None:
        """Checks that need the loaded policy, before the optimiser exists."""

    def _optimizer_settings(self):
        """The settings block holding ``learning_rate`` and ``weight_decay``."""
        raise NotImplementedError

    def _eval_decoding(self) -> dict:
        """``max_new_tokens`` / ``max_turns`` / ``max_episode_tokens`` for held-out evaluation."""
        raise NotImplementedError

    def _postfix(self, m: dict) -> dict:
        """What the progress bar shows after a step."""
        return {}

    def _summary_of_steps(self, h: list[dict], k: int) -> dict:
        """Summary fields from the step metrics (first and last ``k`` steps)."""
        return {}

    def step(self) -> dict:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # 1. data order
    # ------------------------------------------------------------------------------------------
    def _order(self, epoch: int) -> list[int]:
        """The seeded row order of ``epoch`` (computed once per epoch)."""
        if self._order_cache[0] != epoch:
            order = list(range(len(self.pool)))
            random.Random(self.settings.seed * 100_003 + epoch).shuffle(order)
            self._order_cache = (epoch, order)
        return self._order_cache[1]

    def next_rows(self, count: int | None = None) -> list[dict]:
        """The next ``count`` rows of the seeded order (default: a GRPO step's prompts)."""
        n = len(self.pool)
        rows = []
        for _ in range(count or self.settings.grpo.prompts_per_step):
            epoch, i = divmod(self.data_position, n)
            rows.append(self.pool[self._order(epoch)[i]])
            self.data_position += 1
        return rows

    def _record(self, metrics: dict, traces: list[dict]) -> None:
        """Keep a step's metrics; log them (and its traces) into the run folder."""
        self.history.append(metrics)
        if self.run is not None:
            self.run.append("traces", traces)
            self.run.append("metrics", [metrics])
        for cb in self.callbacks:
            cb(metrics)

    # ------------------------------------------------------------------------------------------
    # evaluation
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, n: int | None = None, *, label: str = "eval", batch_size: int = 100) -> dict:
        """Greedy held-out accuracy on the first ``n`` test problems (the task's fixed split)."""
        return evaluate_policy(self.policy, self.task, n=n or self.settings.eval_examples,
                               label=label, step=self.step_count, batch_size=batch_size,
                               run=self.run, **self._eval_decoding())

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        if self.run is None:
            return None
        tmp = self.run.new_checkpoint_dir(self.step_count)
        save_policy_weights(self.policy, tmp / "weights")
        torch.save({"optimizer": self.optimizer.state_dict(),
                    "torch_rng": torch.random.get_rng_state(),
                    "sampling_rng": self.generator.get_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "python_rng": random.getstate()}, tmp / "trainer_state.pt")
        return self.run.commit_checkpoint(tmp, self.step_count, {
            "data_position": self.data_position, "history_len": len(self.history)})

    def _restore(self, saved: dict) -> None:
        """Continue from ``self._resume_at`` (checked in ``__init__``): weights, optimiser, RNG
        states and data position; the logs are cut back to what the checkpoint recorded. A
        checkpoint whose files do not load falls back to the next older complete one."""
        run, point = self.run, self._resume_at
        notes = list(point.notes)
        for ckpt in [point.checkpoint, *point.older] if point.checkpoint else []:
            state = run.checkpoint_state(ckpt)
            try:
                run.check_logs(state, ckpt.name)
                blob = torch.load(ckpt / "trainer_state.pt", weights_only=True)
                load_policy_weights(self.policy, ckpt / "weights")
                self.optimizer.load_state_dict(blob["optimizer"])
                data_position = int(state["data_position"])
            except RunStoreError:
                raise
            except Exception as exc:                   # a damaged file: try an older checkpoint
                notes.append(f"checkpoint {ckpt.name} does not load ({type(exc).__name__}: "
                             f"{str(exc)[:120]}); trying an older one")
                continue
            torch.random.set_rng_state(blob["torch_rng"])
            self.generator.set_state(blob["sampling_rng"])
            if blob.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(blob["cuda_rng"])
            random.setstate(blob["python_rng"])
            self.step_count, self.data_position = state["step"], data_position
            run.truncate_logs(state["log_sizes"])
            run.mark_latest(ckpt)                     # in case latest.json named another
            break
        else:
            if point.checkpoint is not None:
                raise RunStoreError(f"no checkpoint of {run.path} loads: {'; '.join(notes)}. "
                                    "Nothing was changed; start a new run with --out.")
            run.truncate_logs({})                      # killed before the first checkpoint
            notes.append("no checkpoint yet: the run starts again from step 0")
        self.history = run.metrics()
        (run.path / "summary.json").unlink(missing_ok=True)      # no longer finished
        if self.settings.to_dict() != saved:           # RESUMABLE changes, e.g. more steps
            write_json_atomic(run.path / "settings.json", self.settings.to_dict())
        if self.verbose:
            for note in notes:
                _write(f"[workbench] {note}")
            _write(f"[workbench] resumed {run.path} from step {self.step_count}")

    def close(self) -> None:
        """Release the run folder's writer lock (also released when the process ends)."""
        if self.run is not None:
            self.run.close()

    # ------------------------------------------------------------------------------------------
    # the whole job
    # ------------------------------------------------------------------------------------------
    def train(self, steps: int | None = None, *, progress: bool = True) -> dict:
        """Evaluate, train to ``steps`` (default settings.steps), evaluate, summarise."""
        from tqdm.auto import tqdm

        s = self.settings
        total = steps or s.steps
        t0 = time.time()
        evals = {e["label"]: e for e in (self.run.evals() if self.run else [])}
        before = evals.get("before") or self.evaluate(label="before")
        bar = tqdm(total=total, initial=self.step_count, desc=self.label, unit="step",
                   disable=not (progress and self.verbose), dynamic_ncols=True)
        while self.step_count < total:
            m = self.step()
            bar.update(1)
            bar.set_postfix(**self._postfix(m), refresh=False)
            if s.eval_every and self.step_count % s.eval_every == 0 and self.step_count < total:
                result = self.evaluate(min(s.eval_every_examples, s.eval_examples) or None,
                                       label=f"step-{self.step_count}")
                for cb in self.callbacks:                  # e.g. the dashboard's held-out dots
                    if hasattr(cb, "on_eval"):
                        cb.on_eval(result)
            if self.step_count % s.checkpoint_every == 0 or self.step_count == total:
                self.save_checkpoint()
        bar.close()
        after = self.evaluate(label="after")
        return self._summarise(before, after, time.time() - t0)

    def _summarise(self, before: dict, after: dict, seconds: float) -> dict:
        h = self.history
        k = max(1, min(10, len(h) // 5))
        summary = {
            "model": self.settings.model.model, "tier": self.policy.tier, "task": self.task.name,
            "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
            "steps": self.step_count, "seconds": round(seconds, 2),
            "training_seconds": round(sum(m["step_seconds"] for m in h), 2),
            "mean_step_seconds": round(sum(m["step_seconds"] for m in h) / max(1, len(h)), 4),
            **self._summary_of_steps(h, k),
            "eval_examples": after["n"], "seed": self.settings.seed,
            "trainable_parameters": self.policy.trainable_parameters,
        }
        if self.run is not None:
            self.run.write_summary(summary)
            self._save_plot()
        return summary

    def _save_plot(self) -> None:
        """The run's picture, written when it finishes."""


class GRPOTrainer(TrainingLoop):
    """GRPO on one policy and one task, logging into a run folder (see ``TrainingLoop``)."""

    def _prepare(self) -> None:
        self.prompt_tokens = None
        if self.device.type == "cuda":                  # refuse now, not at step 600
            self.prompt_tokens = longest_prompt_tokens(self.tokenizer, self.task.train["prompt"])
            self.memory_estimate = preflight(self.settings, self.policy,
                                             prompt_tokens=self.prompt_tokens,
                                             verbose=self.verbose)

    def _optimizer_settings(self):
        return self.settings.grpo

    def _eval_decoding(self) -> dict:
        g = self.settings.grpo
        return {"max_new_tokens": g.max_new_tokens, "max_turns": g.max_turns,
                "max_episode_tokens": g.max_episode_tokens}

    def _postfix(self, m: dict) -> dict:
        return {"reward": f"{m['reward_mean']:.2f}",
                "acc": f"{m['accuracy']:.2f}" if m["accuracy"] is not None else "-",
                "len": f"{m['completion_length']:.0f}"}

    def _save_plot(self) -> None:
        from .plots import save_run_plot

        save_run_plot(self.run, self.run.path / "rewards.png")

    def _summary_of_steps(self, h: list[dict], k: int) -> dict:
        return {"reward_first": sum(m["reward_mean"] for m in h[:k]) / k if h else None,
                "reward_last": sum(m["reward_mean"] for m in h[-k:]) / k if h else None}

    # ------------------------------------------------------------------------------------------
    # log-probs of completions under the current (or reference) model
    # ------------------------------------------------------------------------------------------
    def completion_logps(self, model, comps: Completions, rows, *, with_entropy: bool = False):
        """Log-probs (B, T) of the episode tokens of ``comps`` rows ``rows`` (a slice or an index
        tensor), and their entropies when asked. ``T`` is the longest real episode among them:
        padding after every episode's end is not computed. Environment tokens get log-probs
        too (they are in the forward pass as context); the loss masks them out.

        Siblings share their prompt, so each distinct prompt is forwarded once and its keys and
        values are copied to its completions (gradients flow back through the copy) -- the same
        numbers as forwarding every prompt+completion row, for a fraction of the prompt work.
        Under gradient checkpointing (which drops caches) or unsloth's patched forward, every row
        is forwarded whole instead.
        """
        if isinstance(rows, slice):
            rows = torch.arange(len(comps))[rows]
        rows = rows.to(comps.completion_ids.device)
        c_mask = comps.completion_mask[rows]
        T = max(1, int(c_mask.sum(dim=1).max()))
        c_ids, c_mask = comps.completion_ids[rows, :T], c_mask[:, :T]
        if self._share_prompts(model):
            logits = _shared_prompt_logits(model, comps, rows, c_ids, c_mask)
        else:
            ids = torch.cat([comps.prompt_ids[rows], c_ids], dim=1)        # (B, P+T)
            mask = torch.cat([comps.prompt_mask[rows], c_mask], dim=1)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                           logits_to_keep=T + 1).logits[:, :-1, :]         # (B, T, V)
        logits = logits.float() / self.settings.grpo.temperature
        logps = token_logps(logits, c_ids)
        if not with_entropy:
            return logps, None
        with torch.no_grad():
            ent = token_entropy(logits)
        return logps, ent

    def _share_prompts(self, model) -> bool:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
        return not checkpointing and self.policy.tier != "unsloth"

    # ------------------------------------------------------------------------------------------
    # one GRPO step
    # ------------------------------------------------------------------------------------------
    def step(self) -> dict:
        g = self.settings.grpo
        t0 = time.perf_counter()
        # 1. prompts
        rows = self.next_rows()
        # 2. a group of episodes per prompt (one completion each, or turns with the environment)
        comps = sample_episodes(self.model, self.tokenizer, rows, env=self.task.env,
                                group_size=g.group_size, max_new_tokens=g.max_new_tokens,
                                max_turns=g.max_turns, max_episode_tokens=g.max_episode_tokens,
                                temperature=g.temperature, top_p=g.top_p,
                                batch_size=self._generation_batch(), generator=self.generator,
                                device=self.device)
        release_cached_memory(self.device)              # the KV cache is gone: give it back
        t_gen = time.perf_counter() - t0
        # 3. rewards, component by component, from whole episodes
        prompts, completions, columns = reward_inputs(rows, comps)
        rewards = score_completions(self.task.reward_funcs, prompts, completions,
                                    weights=self.task.reward_weights, columns=columns)
        t_reward = time.perf_counter() - t0 - t_gen
        # 4. group-relative advantages
        advantages = group_advantages(rewards.total, g.group_size, scale=g.scale_rewards)
        advantages = advantages.to(self.device)
        # 5. policy update
        t1 = time.perf_counter()
        stats = self._update(comps, advantages)
        t_train = time.perf_counter() - t1
        self.step_count += 1
        # 6. record
        metrics = self._metrics(comps, rewards, advantages, stats, t_gen, t_reward, t_train,
                                time.perf_counter() - t0)
        mem = self.memory.record(self.step_count)
        if mem is not None:
            metrics["memory_peak_gib"] = mem.peak / 2**30
            metrics["memory_allocated_gib"] = mem.allocated / 2**30
        self._warn(metrics)
        self._record(metrics, self._traces(rows, comps, rewards, advantages))
        return metrics

    def _generation_batch(self) -> int:
        """Sequences decoded at once: the setting, or fewer when free GPU memory says so."""
        g = self.settings.grpo
        if self.device.type != "cuda":
            return g.generation_batch_size
        return min(g.generation_batch_size, generation_chunk_size(
            self.model.config, free_bytes=free_bytes_now(self.device),
            prompt_tokens=self.prompt_tokens, completion_tokens=self._episode_tokens(),
            dtype_bytes=dtype_bytes_for(self.settings.model.dtype, "cuda"), tier=self.policy.tier,
            max_size=g.group_size * g.prompts_per_step, multiple_of=g.group_size))

    def _episode_tokens(self) -> int:
        """The episode token budget after the prompt (model + environment tokens)."""
        g = self.settings.grpo
        return episode_budget(g.max_new_tokens, g.max_turns or self.task.env().max_turns,
                              g.max_episode_tokens)

    def _update(self, comps: Completions, advantages: torch.Tensor) -> dict:
        """Step 5: ``num_iterations`` optimiser steps on this batch of episodes.

        Rows are split into micro-batches of ``micro_batch_size`` (gradient accumulation); each
        micro-batch is forwarded in pieces of similar episode length (``length_pieces``) so
        that short episodes are not padded to the longest. The pieces' losses add up to the
        micro-batch's loss exactly (``grpo_loss``'s ``batch_rows`` / ``batch_tokens``).
        The loss, KL, entropy and clip fractions count the tokens the model sampled
        (``action_mask``); environment tokens are context only. A one-turn episode's action mask
        is its completion mask, so single-turn numbers are unchanged.
        """
        g = self.settings.grpo
        n = len(comps)
        mb = g.micro_batch_size
        lengths = comps.lengths.cpu()                 # row bookkeeping stays on the CPU
        micro = [torch.arange(i, min(i + mb, n)) for i in range(0, n, mb)]
        pieces = [[idx[p] for p in length_pieces(lengths[idx])] for idx in micro]
        actions = (comps.action_mask if g.mask_environment_tokens   # (N, T) 1 = trained on:
                   else comps.completion_mask)        # sampled by the model (or every token)
        n_tokens = float(actions.sum())
        old = ref = None
        if g.num_iterations > 1:                      # the sampling policy, frozen for all passes
            old = self._all_logps(self.model, comps, pieces)
        if g.beta != 0.0:
            with self.policy.reference() as ref_model:
                ref = self._all_logps(ref_model, comps, pieces)
        self.model.train()
        totals = {"loss": 0.0, "kl": 0.0, "clip_low": 0.0, "clip_high": 0.0, "entropy": 0.0,
                  "grad_norm": 0.0}
        count = 0
        for _ in range(g.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            for idx, parts_of in zip(micro, pieces):
                batch_tokens = float(actions[idx].sum())
                for rows in parts_of:
                    logps, ent = self.completion_logps(self.model, comps, rows, with_entropy=True)
                    T = logps.shape[1]
                    mask = actions[rows, :T].to(logps.dtype)
                    parts = grpo_loss(
                        logps, old[rows, :T] if old is not None else logps.detach(),
                        advantages[rows], mask, loss_type=g.loss_type,
                        epsilon_low=g.epsilon_low, epsilon_high=g.epsilon_high, beta=g.beta,
                        ref_logps=ref[rows, :T] if ref is not None else None,
                        max_completion_length=comps.token_budget, num_items_in_batch=n_tokens,
                        num_micro_batches=len(micro), batch_rows=len(idx),
                        batch_tokens=batch_tokens)
                    parts.loss.backward()
                    w = float(mask.sum()) / max(n_tokens, 1.0)
                    totals["loss"] += float(parts.loss.detach())
                    totals["kl"] += parts.kl * w
                    totals["clip_low"] += parts.clip_low * w
                    totals["clip_high"] += parts.clip_high * w
                    totals["entropy"] += float((ent * mask).sum()) / max(n_tokens, 1.0)
            params = [p for p in self.model.parameters() if p.requires_grad]
            totals["grad_norm"] += float(torch.nn.utils.clip_grad_norm_(params, g.max_grad_norm))
            self.optimizer.step()
            count += 1
        self.optimizer.zero_grad(set_to_none=True)
        return {k: v / count for k, v in totals.items()}

    @torch.no_grad()
    def _all_logps(self, model, comps: Completions, pieces: list[list[torch.Tensor]]) -> torch.Tensor:
        """(N, T) log-probs of every completion token under ``model`` (old or reference policy)."""
        out = torch.zeros(comps.completion_ids.shape, device=comps.completion_ids.device)
        for rows in (r for parts_of in pieces for r in parts_of):
            logps, _ = self.completion_logps(model, comps, rows)
            out[rows, :logps.shape[1]] = logps
        return out

    def _metrics(self, comps, rewards, advantages, stats, t_gen, t_reward, t_train, t_step) -> dict:
        g = self.settings.grpo
        lengths = comps.model_lengths.float()          # tokens the model wrote
        m = {"step": self.step_count, "reward_mean": float(rewards.total.mean()),
             "reward_std": float(rewards.total.std()) if len(comps) > 1 else 0.0}
        for i, name in enumerate(rewards.names):
            col = rewards.components[:, i]
            col = col[~torch.isnan(col)]
            m[f"reward/{name}/mean"] = float(col.mean()) if col.numel() else None
            m[f"reward/{name}/std"] = float(col.std()) if col.numel() > 1 else 0.0
        m["accuracy"] = accuracy_of(rewards)
        m["completion_length"] = float(lengths.mean())
        m["completion_length_max"] = float(lengths.max())
        m["truncated_fraction"] = float((~comps.finished).float().mean())
        m.update(episode_metrics(comps, rewards))
        m["kl"] = stats["kl"]
        m["clip_low"], m["clip_high"] = stats["clip_low"], stats["clip_high"]
        m["clip_fraction"] = stats["clip_low"] + stats["clip_high"]
        m["entropy"] = stats["entropy"]
        m["loss"] = stats["loss"]
        m["grad_norm"] = stats["grad_norm"]
        m["zero_std_fraction"] = float(zero_std_groups(rewards.total, g.group_size).float().mean())
        m["advantage_abs_mean"] = float(advantages.abs().mean())
        gen_tokens = float(comps.action_mask.sum())
        t_gen = t_gen - comps.env_seconds               # the environment's time is its own line
        m["generation_seconds"] = round(t_gen, 4)
        m["env_seconds"] = round(comps.env_seconds, 4)
        m["reward_seconds"] = round(t_reward, 4)
        m["training_seconds"] = round(t_train, 4)
        m["step_seconds"] = round(t_step, 4)
        m["generated_tokens"] = int(gen_tokens)        # what a token budget counts
        m["generation_tokens_per_second"] = gen_tokens / max(t_gen, 1e-9)
        m["tokens_per_second"] = gen_tokens / max(t_step, 1e-9)
        m["data_position"] = self.data_position
        return m

    def _traces(self, rows, comps, rewards, advantages) -> list[dict]:
        g = self.settings.grpo
        comp_rows = rewards.as_rows()
        out = []
        for i, text in enumerate(comps.texts):
            row = rows[i // g.group_size]
            out.append({
                "step": self.step_count, "group": i // g.group_size, "index": i % g.group_size,
                "prompt": _prompt_text(row["prompt"]), "completion": text,
                "answer": str(row.get("answer", "")), "components": comp_rows[i],
                "reward": float(rewards.total[i]), "advantage": float(advantages[i]),
                "length": int(comps.action_mask[i].sum()), "finished": bool(comps.finished[i]),
            })
            if comps.max_turns > 1:                     # the whole episode, turn by turn
                out[-1].update(turns=comps.turns[i], ended=comps.final_info[i]["ended"],
                               env_tokens=int(comps.lengths[i] - comps.action_mask[i].sum()))
        return out

    def _warn(self, m: dict) -> None:
        notes = []
        if m["zero_std_fraction"] >= 1.0:
            notes.append(("zero_std", "every group gave all its completions the same reward: no "
                          "learning signal this step. If it persists, change task difficulty, raise "
                          "group_size or temperature."))
        if abs(m["loss"]) < 1e-6 and self.settings.grpo.num_iterations == 1:
            notes.append(("loss_zero", "loss is ~0: expected in GRPO (advantages are centred within "
                          "each group); watch reward, not loss."))
        if self.memory.creep_bytes(5) > 256 * 2**20:
            notes.append(("memory_creep", f"GPU memory held between steps grew by "
                          f"{self.memory.creep_bytes(5) / 2**20:.0f} MiB since step 5: something "
                          "is kept alive across steps."))
        if m["clip_fraction"] > 0.2:
            notes.append(("clip_high", f"{m['clip_fraction']:.0%} of tokens were clipped: the policy "
                          "moves too far per step; lower learning_rate or num_iterations."))
        for key, text in notes:
            if key == "zero_std" or key not in self._warned:
                self._warned.add(key)
                m.setdefault("warnings", []).append(text)
                if self.verbose:
                    _write(f"[workbench] step {m['step']}: {text}")


def length_pieces(lengths: torch.Tensor, *, max_pieces: int = 4,
                  min_saving: float = 0.125) -> list[torch.Tensor]:
    """Split rows into at most ``max_pieces`` groups of similar length, to forward separately.

    A piece costs ``rows * longest`` padded tokens. Rows are sorted by length and cut where the
    cuts save the most; each extra piece must save at least ``min_saving`` of the unsplit cost,
    since every extra forward pass has a fixed cost too. Returns index tensors into ``lengths``,
    shortest rows first; a single piece when no cut pays.
    """
    order = torch.argsort(lengths, stable=True)
    values, counts = torch.unique_consecutive(lengths[order].clamp(min=1), return_counts=True)
    values, counts = values.tolist(), counts.tolist()
    ends = [sum(counts[:j + 1]) for j in range(len(counts))]      # rows up to the end of run j
    penalty = min_saving * len(lengths) * values[-1]
    # best[k][j]: least cost of the rows up to run j in k pieces; a piece ends at a run's end
    inf = float("inf")
    m = len(values)
    best = [[inf] * m for _ in range(max_pieces + 1)]
    cut = [[-1] * m for _ in range(max_pieces + 1)]
    for j in range(m):
        best[1][j] = ends[j] * values[j] + penalty
    for k in range(2, max_pieces + 1):
        for j in range(m):
            for i in range(j):                                      # last piece: runs i+1..j
                cost = best[k - 1][i] + (ends[j] - ends[i]) * values[j] + penalty
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_pieces + 1), key=lambda k: best[k][m - 1])
    bounds, j = [], m - 1
    while k > 1:
        i = cut[k][j]
        bounds.append((ends[i], ends[j]))
        j, k = i, k - 1
    bounds.append((0, ends[j]))
    return [order[a:b] for a, b in reversed(bounds)]


def episode_metrics(comps: Completions, rewards) -> dict:
    """Turns per episode, success by turn, environment vs model tokens (one step's episodes).

    ``success_by_turn/k``: share of episodes judged correct (answer component 1) that ended
    within ``k`` model turns -- it rises with ``k`` when feedback helps.
    """
    taken = torch.tensor([f["turns"] for f in comps.final_info], dtype=torch.float32)
    model_tokens = comps.model_lengths.float()
    env_tokens = comps.lengths.float() - model_tokens
    m = {"turns_mean": float(taken.mean()), "turns_max": int(taken.max()),
         "model_tokens": float(model_tokens.mean()), "env_tokens": float(env_tokens.mean())}
    if comps.max_turns > 1 and "answer" in rewards.names:
        correct = (rewards.component("answer") >= 1.0).cpu()
        for k in range(1, comps.max_turns + 1):
            m[f"success_by_turn/{k}"] = float((correct & (taken <= k)).float().mean())
    return m


def _shared_prompt_logits(model, comps: Completions, rows: torch.Tensor, c_ids: torch.Tensor,
                          c_mask: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) predicting ``c_ids`` with each distinct prompt of ``rows`` forwarded once."""
    from transformers import DynamicCache

    first, row_of = torch.unique(comps.prompt_index[rows], return_inverse=True)
    # ``first``: one row of each distinct prompt (siblings share theirs)
    p_ids, p_mask = comps.prompt_ids[first], comps.prompt_mask[first]
    positions = (p_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache.batch_select_indices(row_of)                   # prompt keys/values, one copy per row
    first_logits = out.logits[row_of][:, -1:, :]         # predicts completion token 0
    T = c_ids.shape[1]
    if T == 1:
        return first_logits
    mask = torch.cat([p_mask[row_of], c_mask[:, :-1]], dim=1)
    c_pos = positions[row_of, -1:] + torch.arange(1, T, device=c_ids.device)
    rest = model(input_ids=c_ids[:, :-1], attention_mask=mask, position_ids=c_pos,
                 past_key_values=cache, use_cache=True).logits         # predicts tokens 1..T-1
    return torch.cat([first_logits, rest], dim=1)


def evaluate_policy(policy: Policy, task: Task, *, n: int = 200, max_new_tokens: int = 32,
                    label: str = "eval", step: int = 0, batch_size: int = 100,
                    run: Run | None = None, max_turns: int | None = None,
                    max_episode_tokens: int | None = None) -> dict:
    """Greedy accuracy on the first ``n`` held-out problems, judged by the task's answer reward.

    Each problem is one greedy episode in the task's environment (one completion for a plain
    task; ``max_turns`` None = the environment's own limit), scored at its end.
    """
    test = task.test.select(range(min(n, len(task.test))))
    answer_fn = answer_reward_of(task)
    texts, correct, turns = [], [], []
    for i in range(0, len(test), batch_size):
        rows = [test[j] for j in range(i, min(i + batch_size, len(test)))]
        comps = sample_episodes(policy.model, policy.tokenizer, rows, env=task.env, group_size=1,
                                max_new_tokens=max_new_tokens, max_turns=max_turns,
                                max_episode_tokens=max_episode_tokens, temperature=0.0,
                                device=policy.device)
        prompts, completions, cols = reward_inputs(rows, comps)
        scores = answer_fn(prompts=prompts, completions=completions, **cols)
        texts += comps.texts
        turns += comps.turns if comps.max_turns > 1 else [None] * len(rows)
        correct += [float(x or 0.0) >= 1.0 for x in scores]
    examples = [{"prompt": _prompt_text(test[i]["prompt"]), "completion": texts[i],
                 "answer": test[i]["answer"], "correct": correct[i]}
                for i in range(min(5, len(texts)))]
    for e, t in zip(examples, turns):
        if t is not None:
            e["turns"] = t
    result = {"label": label, "step": step, "n": len(correct),
              "accuracy": sum(correct) / max(1, len(correct)), "examples": examples}
    if run is not None:
        run.append("evals", [result])
    return result


def train(settings: TrainSettings | None = None, out: str | Path | None = None, *,
          resume: bool = False, steps: int | None = None, **kwargs) -> dict:
    """Run the whole job: the function behind ``python -m workbench train``.

    ``resume=True`` continues the run in ``out`` with its own settings; ``steps`` (or settings
    that differ only in ``settings.RESUMABLE`` fields) extends it, anything else is refused.
    """
    return run_job(GRPOTrainer, settings, out, resume=resume, steps=steps, **kwargs)


def run_job(loop: type[TrainingLoop], settings=None, out: str | Path | None = None, *,
            resume: bool = False, steps: int | None = None, **kwargs) -> dict:
    """Train ``loop`` (``GRPOTrainer``, ``SFTTrainer``) to the end and release its folder."""
    if steps is not None:
        kind = loop.settings_type
        base = settings or (kind.from_dict(Run.open(out).settings) if resume else kind())
        settings = replace(base, steps=steps)
    trainer = loop(settings, out, resume=resume, **kwargs)
    try:
        return trainer.train()
    finally:
        trainer.close()


def run_from_cli(loop: type[TrainingLoop], args, settings_from_args) -> tuple[dict, str]:
    """``python -m workbench train|sft``: start a run in ``--out`` (``--overwrite`` replaces
    one), or continue ``--resume``'s with its own settings and the flags given over them.
    Returns (summary, run folder). A folder of the other kind of run is refused in one line."""
    if not args.resume:
        return run_job(loop, settings_from_args(args), args.out,
                       overwrite=args.overwrite), args.out
    if args.overwrite:
        raise SettingsError("--overwrite replaces a run and --resume continues one: give one.")
    saved = Run.open(args.resume).settings
    ours = {f.name for f in dataclasses.fields(loop.settings_type)}
    blocks = set(saved) if isinstance(saved, dict) else set()  # from_dict judges the rest
    other = next((kind for block, kind in _KINDS.items()
                  if block in blocks and block not in ours), None)
    if other:
        raise SettingsError(f"{args.resume} is {other[0]} run: resume it with `python -m "
                            f"workbench {other[1]} --resume {args.resume}`.")
    base = loop.settings_type.from_dict(saved)
    return run_job(loop, settings_from_args(args, base), args.resume, resume=True), args.resume


_KINDS = {"grpo": ("a GRPO", "train"), "sft": ("an SFT", "sft")}   # block -> run, command


def _prompt_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(completion_text(m) for m in prompt if m.get("role") == "user") or \
        completion_text([m for m in prompt])


def _write(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text)


__all__ = ["GRPOTrainer", "evaluate_policy", "length_pieces", "run_from_cli", "train"]
