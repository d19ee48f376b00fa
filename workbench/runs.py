"""The run store: every training run is a folder you can read, plot, inspect and resume.

::

    RUN/
      settings.json          the TrainSettings of the run
      metrics.jsonl          one line per GRPO step (rewards per component, accuracy, KL, ...)
      traces.jsonl           one line per completion: step, prompt, completion, components,
                             reward, advantage (what the trace browser reads)
      evals.jsonl            held-out evaluations (before / during / after)
      checkpoints/step-000025/   weights or adapter, optimiser, RNG states, data position
      checkpoints/latest.json    which checkpoint is the newest complete one
      summary.json           written when the run finishes
      rewards.png            reward and accuracy per step

Durability: json files are written to a temporary name, fsynced, then renamed (atomic on POSIX);
a checkpoint folder is complete before ``latest.json`` points at it. The jsonl logs are
append-only and each checkpoint records their byte sizes, so a resumed run first cuts them back to
the checkpoint and then redoes the steps after it: a run killed with SIGKILL at any instant resumes
with no lost and no duplicated step.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

LOGS = ("metrics.jsonl", "traces.jsonl", "evals.jsonl")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_jsonable)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class RunStoreError(RuntimeError):
    pass


class Run:
    """A run folder. ``Run.create`` starts one, ``Run.open`` reads (or resumes) one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- creating and opening -----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, settings: dict, *, overwrite: bool = False) -> "Run":
        path = Path(path)
        if (path / "settings.json").exists() and not overwrite:
            raise RunStoreError(
                f"{path} already holds a run. Resume it with `python -m workbench train --resume "
                f"{path}`, or choose another --out (or pass overwrite=True to replace it).")
        if path.exists() and overwrite:
            for name in [*LOGS, "summary.json", "rewards.png", "settings.json"]:
                (path / name).unlink(missing_ok=True)
            shutil.rmtree(path / "checkpoints", ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
        run = cls(path)
        write_json_atomic(path / "settings.json", settings)
        for name in LOGS:
            (path / name).touch()
        return run

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not (path / "settings.json").exists():
            raise RunStoreError(f"{path} is not a run folder (no settings.json)")
        return cls(path)

    @property
    def settings(self) -> dict:
        return json.loads((self.path / "settings.json").read_text())

    # -- append-only logs ---------------------------------------------------------------------
    def append(self, log: str, rows: list[dict]) -> None:
        """Append rows to ``metrics`` / ``traces`` / ``evals`` (one JSON object per line)."""
        if not rows:
            return
        data = "".join(json.dumps(r, default=_jsonable, sort_keys=True) + "\n" for r in rows)
        with open(self.path / f"{log}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self, log: str) -> list[dict]:
        return list(self.iter(log))

    def iter(self, log: str) -> Iterator[dict]:
        path = self.path / f"{log}.jsonl"
        if not path.exists():
            return
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.endswith("\n"):       # a torn last line (killed mid-write) is skipped
                    yield json.loads(line)

    def metrics(self) -> list[dict]:
        return self.read("metrics")

    def traces(self, step: int | None = None) -> list[dict]:
        rows = self.iter("traces")
        return [r for r in rows if step is None or r["step"] == step]

    def evals(self) -> list[dict]:
        return self.read("evals")

    def log_sizes(self) -> dict[str, int]:
        return {name: (self.path / name).stat().st_size if (self.path / name).exists() else 0
                for name in LOGS}

    def truncate_logs(self, sizes: dict[str, int]) -> None:
        """Cut every log back to ``sizes`` (bytes): what a checkpoint recorded."""
        for name in LOGS:
            path = self.path / name
            with open(path, "a+b") as fh:
                fh.truncate(sizes.get(name, 0))
                fh.flush()
                os.fsync(fh.fileno())

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def new_checkpoint_dir(self, step: int) -> Path:
        """A temporary folder to fill; ``commit_checkpoint`` makes it the latest."""
        tmp = self.checkpoint_dir / f".tmp-step-{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, state: dict, *, keep: int = 2) -> Path:
        """Record ``state`` (JSON) in ``tmp``, rename it into place, point latest.json at it."""
        state = dict(state, step=step, log_sizes=self.log_sizes())
        write_json_atomic(tmp / "state.json", state)
        for f in tmp.iterdir():                       # contents durable before the rename
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        final = self.checkpoint_dir / f"step-{step:06d}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoint_dir)
        write_json_atomic(self.checkpoint_dir / "latest.json", {"step": step, "path": final.name})
        self._prune(keep)
        return final

    def latest_checkpoint(self) -> Path | None:
        latest = self.checkpoint_dir / "latest.json"
        if not latest.exists():
            return None
        path = self.checkpoint_dir / json.loads(latest.read_text())["path"]
        return path if (path / "state.json").exists() else None

    def checkpoint_state(self, path: Path) -> dict:
        return json.loads((path / "state.json").read_text())

    def _prune(self, keep: int) -> None:
        done = sorted(p for p in self.checkpoint_dir.glob("step-*") if p.is_dir())
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for tmp in self.checkpoint_dir.glob(".tmp-step-*"):
            shutil.rmtree(tmp, ignore_errors=True)

    # -- summaries ------------------------------------------------------------------------------
    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.path / "summary.json", summary)

    def summary(self) -> dict | None:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.exists() else None


def describe_run(path: str | Path) -> str:
    """A short text summary of a run folder (what ``python -m workbench inspect`` prints)."""
    run = Run.open(path)
    s = run.settings
    metrics = run.metrics()
    evals = run.evals()
    lines = [f"run: {run.path}",
             f"model: {s['model']['model']}  task: {s['task']['name']}  "
             f"group_size: {s['grpo']['group_size']}  loss: {s['grpo']['loss_type']}  "
             f"steps: {len(metrics)}/{s['steps']}"]
    if metrics:
        first, last = metrics[0], metrics[-1]
        k = max(1, min(10, len(metrics) // 5))
        head = sum(m["reward_mean"] for m in metrics[:k]) / k
        tail = sum(m["reward_mean"] for m in metrics[-k:]) / k
        lines.append(f"reward: {head:.3f} (first {k} steps) -> {tail:.3f} (last {k})")
        if first.get("accuracy") is not None:
            acc_head = sum(m["accuracy"] for m in metrics[:k]) / k
            acc_tail = sum(m["accuracy"] for m in metrics[-k:]) / k
            lines.append(f"train accuracy: {acc_head:.3f} -> {acc_tail:.3f}")
        lines.append(f"completion length: {first['completion_length']:.1f} -> "
                     f"{last['completion_length']:.1f} tokens; "
                     f"mean step {sum(m['step_seconds'] for m in metrics) / len(metrics):.2f}s")
    for e in evals:
        lines.append(f"held-out accuracy ({e['label']}, step {e['step']}): {e['accuracy']:.3f} "
                     f"on {e['n']} problems")
    ckpt = run.latest_checkpoint()
    lines.append(f"latest checkpoint: {ckpt.name if ckpt else 'none'}")
    summary = run.summary()
    lines.append("finished" if summary else "not finished (resume with --resume)")
    traces = run.traces(step=metrics[-1]["step"]) if metrics else []
    if traces:
        best = max(traces, key=lambda t: t["reward"])
        lines.append(f"a best completion of the last step (reward {best['reward']:.2f}):")
        lines.extend("    " + ln for ln in best["completion"].splitlines()[:8])
    return "\n".join(lines)
