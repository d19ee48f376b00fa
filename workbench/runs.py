"""The run store: every training run is a folder you can read, plot, inspect and resume.

::

    RUN/
      settings.json          the TrainSettings of the run
      metrics.jsonl          one line per GRPO step (rewards per component, accuracy, KL, ...)
      traces.jsonl           one line per completion: step, prompt, completion, components,
                             reward, advantage (what the trace browser reads)
      evals.jsonl            held-out evaluations (before / during / after)
      checkpoints/step-000025/   weights or adapter, optimiser, RNG states, data position, and
                                 state.json: the step, the logs' sizes and every file's size
      checkpoints/latest.json    the newest checkpoint when it was written (a hint, see below)
      summary.json           written when the run finishes
      rewards.png            reward and accuracy per step
      writer.lock            held (fcntl) by the one process writing the run; names it

Durability: json files are written to a temporary name, fsynced, then renamed (atomic on POSIX);
a checkpoint folder is filled and fsynced under a temporary name, then renamed into place, and
its ``state.json`` lists every file with its size, so a checkpoint that lost or cut a file later
is known to be incomplete. The jsonl logs are append-only and each checkpoint records their byte
sizes, so a resumed run first cuts them back to the checkpoint and then redoes the steps after
it: a run killed with SIGKILL at any instant resumes with no lost and no duplicated step.

Resume reads the folder as evidence and never guesses:

- it continues from the newest *complete* checkpoint; ``latest.json`` naming a missing or
  incomplete one is not trusted (the folder says so, and which one is used instead);
- a log shorter than its checkpoint recorded, or one that does not hold exactly the steps the
  checkpoint says, is refused with what to do: the trainer only appends and syncs before it
  records a size, so a shorter log was changed by something else (a partial copy, a hand edit),
  and neither padding it nor redoing steps silently would give back what was there;
- one writer at a time: a second process that tries to write (train, resume, overwrite) the same
  folder is refused and told which process holds it. In one process (a notebook cell run again)
  the newer ``Run`` takes the folder over and the older one can no longer write. Readers
  (``Run.open``, the widgets, ``inspect``) take no lock. Where the file system has no locks (some
  network mounts) or the platform has no ``fcntl`` (Windows), runs are not locked.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:                                      # pragma: no cover  (Windows)
    fcntl = None

LOGS = ("metrics.jsonl", "traces.jsonl", "evals.jsonl")
LOCK = "writer.lock"
_CHECKPOINT_NAME = re.compile(r"step-(\d{6,})")
_WRITERS: "weakref.WeakValueDictionary[str, Run]" = weakref.WeakValueDictionary()  # this process


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
    """A run folder that cannot be used as asked; the message says why and what to do."""


def _read_json(path: Path, what: str) -> Any:
    """JSON from ``path``, or a ``RunStoreError`` that names the damaged file."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunStoreError(f"{path} is missing ({what})") from None
    except OSError as exc:
        raise RunStoreError(f"{path} cannot be read ({what}): {exc.strerror}") from None
    except ValueError as exc:                            # JSONDecodeError, UnicodeDecodeError
        raise RunStoreError(f"{path} is damaged ({what}; not JSON: {exc})") from None


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues, and what was passed over on the way (``Run.resume_point``).

    checkpoint None: no checkpoint was written yet, so the run starts again from step 0.
    """

    checkpoint: Path | None
    state: dict | None                  # its state.json (step, log_sizes, files, trainer's keys)
    older: tuple[Path, ...]             # complete older checkpoints, newest first (fallbacks)
    notes: tuple[str, ...]              # what was skipped and why, printed when resuming


class Run:
    """A run folder. ``Run.create`` starts one, ``Run.open`` reads (or resumes) one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_file = None
        self._superseded = False

    # -- creating and opening -----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, settings: dict, *, overwrite: bool = False) -> "Run":
        """A new run in ``path`` (made if missing), locked for writing; see ``reserve``."""
        run = cls.reserve(path, overwrite=overwrite)
        run.start(settings, overwrite=overwrite)
        return run

    @classmethod
    def reserve(cls, path: str | Path, *, overwrite: bool = False) -> "Run":
        """Take ``path`` for a new run: check that it can hold one, make the folder and take the
        writer lock. Nothing already there changes until ``start`` (so a trainer can load its
        model in between and, if that fails, leave an old run as it was)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunStoreError(f"{path} is a file, not a folder: give --out a folder path "
                                "(it is made if missing).")
        cls._refuse_clobber(path, overwrite)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunStoreError(f"cannot make the run folder {path}: {exc.strerror}. Choose a "
                                "folder you can write to.") from None
        run = cls(path)
        run.lock()
        return run

    @staticmethod
    def _refuse_clobber(path: Path, overwrite: bool) -> None:
        if (path / "settings.json").exists() and not overwrite:
            raise RunStoreError(
                f"{path} already holds a run. Resume it with `python -m workbench train --resume "
                f"{path}`, or choose another --out (or pass overwrite=True to replace it).")

    def start(self, settings: dict, *, overwrite: bool = False) -> None:
        """Write a fresh run into the reserved folder; ``overwrite`` first removes an old run."""
        self._check_writer()
        self._refuse_clobber(self.path, overwrite)
        if overwrite:
            for name in [*LOGS, "summary.json", "rewards.png", "settings.json"]:
                (self.path / name).unlink(missing_ok=True)
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        self.checkpoint_dir.mkdir(exist_ok=True)
        write_json_atomic(self.path / "settings.json", settings)
        for name in LOGS:
            (self.path / name).touch()

    @classmethod
    def open(cls, path: str | Path, *, lock: bool = False) -> "Run":
        """An existing run; ``lock=True`` also takes the writer lock (to resume it)."""
        path = Path(path)
        if not path.is_dir():
            why = "a file" if path.exists() else "no such folder"
            raise RunStoreError(f"{path} is not a run folder ({why})")
        if not (path / "settings.json").exists():
            raise RunStoreError(f"{path} is not a run folder (no settings.json)")
        run = cls(path)
        if lock:
            run.lock()
        return run

    # -- one writer at a time -------------------------------------------------------------------
    def lock(self) -> None:
        """Become the run's one writer: an fcntl lock on ``writer.lock`` held until ``close``.

        Another process holding it: ``RunStoreError`` naming that process. A ``Run`` of this
        process holding it (a notebook cell run again): this one takes over and the old one is
        closed for writing.
        """
        if self._lock_file is not None:
            return
        try:
            fh = open(self.path / LOCK, "a+", encoding="utf-8")
        except OSError as exc:
            raise RunStoreError(f"cannot write in {self.path}: {exc.strerror}. Choose a folder "
                                "you can write to.") from None
        key = str(self.path.resolve())
        if fcntl is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _WRITERS.get(key)
                if holder is None or holder._lock_file is None:
                    fh.seek(0)
                    who = fh.read().strip() or "another process"
                    fh.close()
                    raise RunStoreError(
                        f"{self.path} is being written by {who}; two writers would interleave "
                        "their steps. Wait for it to finish or stop it, then try again.") from None
                holder._release(superseded=True)
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:                      # a file system without locks: run unlocked
                pass
        fh.seek(0)
        fh.truncate()
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:160] if sys.argv else "python"
        fh.write(f"process {os.getpid()} ({command}) on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._lock_file, self._superseded = fh, False
        _WRITERS[key] = self

    def close(self) -> None:
        """Give up the writer lock (nothing to do for a reader)."""
        self._release(superseded=False)

    def _release(self, *, superseded: bool) -> None:
        fh, self._lock_file = self._lock_file, None
        if fh is not None:
            fh.close()                                # closing the file drops the flock
            if _WRITERS.get(str(self.path.resolve())) is self:
                del _WRITERS[str(self.path.resolve())]
        self._superseded = superseded

    def _check_writer(self) -> None:
        if self._superseded:
            raise RunStoreError(f"{self.path} was opened for writing again in this process (a "
                                "newer trainer took it over); this one can no longer write to it.")

    @property
    def settings(self) -> dict:
        data = _read_json(self.path / "settings.json", "the run's settings")
        if not isinstance(data, dict):
            raise RunStoreError(f"{self.path / 'settings.json'} is damaged (not a JSON object)")
        return data

    # -- append-only logs ---------------------------------------------------------------------
    def append(self, log: str, rows: list[dict]) -> None:
        """Append rows to ``metrics`` / ``traces`` / ``evals`` (one JSON object per line)."""
        if not rows:
            return
        self._check_writer()
        data = "".join(json.dumps(r, default=_jsonable, sort_keys=True) + "\n" for r in rows)
        with open(self.path / f"{log}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self, log: str) -> list[dict]:
        return list(self.iter(log))

    def iter(self, log: str, *, upto: int | None = None) -> Iterator[dict]:
        """The rows of a log in order (its first ``upto`` bytes only, when given).

        A torn last line (killed mid-write) is skipped; a damaged line anywhere else raises
        ``RunStoreError`` naming the file and line.
        """
        path = self.path / f"{log}.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as fh:
            done = 0
            for lineno, raw in enumerate(fh, 1):
                done += len(raw)
                if not raw.endswith(b"\n") or (upto is not None and done > upto):
                    return
                try:
                    row = json.loads(raw)
                except ValueError as exc:
                    raise RunStoreError(f"{path}:{lineno} is damaged (not a JSON line: "
                                        f"{str(exc)[:80]})") from None
                if not isinstance(row, dict):
                    raise RunStoreError(f"{path}:{lineno} is damaged (not a JSON object)")
                yield row

    def metrics(self) -> list[dict]:
        return self.read("metrics")

    def traces(self, step: int | None = None) -> list[dict]:
        rows = self.iter("traces")
        return [r for r in rows if step is None or r.get("step") == step]

    def evals(self) -> list[dict]:
        return self.read("evals")

    def log_sizes(self) -> dict[str, int]:
        return {name: (self.path / name).stat().st_size if (self.path / name).exists() else 0
                for name in LOGS}

    def truncate_logs(self, sizes: dict[str, int]) -> None:
        """Cut every log back to ``sizes`` (bytes): what a checkpoint recorded.

        Never lengthens a log: one shorter than asked raises (and no log is cut).
        """
        self._check_writer()
        have = self.log_sizes()
        for name in LOGS:
            if have[name] < sizes.get(name, 0):
                raise RunStoreError(self._short_log(name, have[name], sizes[name], "the checkpoint"))
        for name in LOGS:
            with open(self.path / name, "a+b") as fh:
                fh.truncate(sizes.get(name, 0))
                fh.flush()
                os.fsync(fh.fileno())

    def _short_log(self, name: str, have: int, want: int, ckpt: str) -> str:
        return (f"{self.path / name} has {have} bytes but {ckpt} recorded {want}: lines written "
                "before that checkpoint are gone (a partial copy or an edit?). Nothing was changed; "
                "put the whole file back, or start a new run with --out.")

    def check_logs(self, state: dict, name: str) -> None:
        """Raise ``RunStoreError`` unless the logs hold, up to the sizes checkpoint ``name``
        recorded, whole JSON lines and exactly the metrics of steps 1..step."""
        sizes, step = state["log_sizes"], state["step"]
        have = self.log_sizes()
        for log in LOGS:
            want = sizes.get(log, 0)
            if have[log] < want:
                raise RunStoreError(self._short_log(log, have[log], want, name))
            if want:
                with open(self.path / log, "rb") as fh:
                    fh.seek(want - 1)
                    if fh.read(1) != b"\n":
                        raise RunStoreError(
                            f"{self.path / log} does not end a line where {name} recorded it "
                            f"ended (byte {want}): the log was edited. Nothing was changed; put "
                            "the file back, or start a new run with --out.")
            rows = list(self.iter(log.removesuffix(".jsonl"), upto=want))
            if log == "metrics.jsonl":
                steps = [r.get("step") for r in rows]
                if steps != list(range(1, step + 1)):
                    shown = steps if len(steps) <= 12 else [*steps[:3], "...", *steps[-3:]]
                    raise RunStoreError(
                        f"{self.path / log} holds steps [{', '.join(map(str, shown))}] before "
                        f"{name}, which needs "
                        f"exactly 1..{step}: the log does not belong to this checkpoint. Nothing "
                        "was changed; put the file back, or start a new run with --out.")

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def new_checkpoint_dir(self, step: int) -> Path:
        """A temporary folder to fill; ``commit_checkpoint`` makes it the latest."""
        self._check_writer()
        tmp = self.checkpoint_dir / f".tmp-step-{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, state: dict, *, keep: int = 2) -> Path:
        """Record ``state`` (JSON) in ``tmp``, rename it into place, point latest.json at it.

        ``state.json`` also gets the step, the logs' sizes and every file's size (``files``),
        which is how ``checkpoint_problem`` later tells a complete checkpoint from a damaged one.
        """
        self._check_writer()
        files = {}
        for f in sorted(tmp.rglob("*")):              # contents durable before the rename
            if f.is_file() and f.name != "state.json":
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
                files[f.relative_to(tmp).as_posix()] = f.stat().st_size
            elif f.is_dir():
                _fsync_dir(f)
        state = dict(state, step=step, log_sizes=self.log_sizes(), files=files)
        write_json_atomic(tmp / "state.json", state)
        final = self.checkpoint_dir / f"step-{step:06d}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoint_dir)
        write_json_atomic(self.checkpoint_dir / "latest.json", {"step": step, "path": final.name})
        self._prune(keep)
        return final

    def checkpoint_problem(self, path: Path) -> str | None:
        """Why ``path`` is not a complete checkpoint, or None when it is.

        Complete: a ``step-NNNNNN`` folder whose state.json is readable, names the same step and
        lists files that are all there with the sizes they had when it was written (checkpoints
        from before that list only need a readable state.json).
        """
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if not match:
            return "not a checkpoint folder name"
        if not path.is_dir():
            return "missing"
        try:
            state = _read_json(path / "state.json", "checkpoint state")
        except RunStoreError as exc:
            return "state.json " + ("missing" if "missing" in str(exc) else "damaged")
        if not isinstance(state, dict) or state.get("step") != int(match.group(1)):
            return "state.json does not describe this step"
        sizes = state.get("log_sizes")
        if not isinstance(sizes, dict) or not all(isinstance(v, int) for v in sizes.values()):
            return "state.json has no log sizes"
        files = state.get("files", {})
        if not isinstance(files, dict):
            return "state.json has no file list"
        for rel, size in files.items():
            f = path / rel
            if not f.is_file():
                return f"{rel} is missing"
            if f.stat().st_size != size:
                return f"{rel} has {f.stat().st_size} bytes, {size} were written"
        return None

    def _checkpoints(self) -> list[tuple[int, Path, str | None]]:
        """(step, folder, problem or None) of every checkpoint folder, newest first."""
        found = []
        if self.checkpoint_dir.is_dir():
            for p in self.checkpoint_dir.iterdir():
                match = _CHECKPOINT_NAME.fullmatch(p.name)
                if match:
                    found.append((int(match.group(1)), p, self.checkpoint_problem(p)))
        return sorted(found, key=lambda t: t[0], reverse=True)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (``latest.json`` is only a hint: it can name a
        checkpoint that was removed or damaged later)."""
        return next((p for _, p, problem in self._checkpoints() if problem is None), None)

    def checkpoint_state(self, path: Path) -> dict:
        return _read_json(path / "state.json", "checkpoint state")

    def resume_point(self) -> ResumePoint:
        """The checkpoint to resume from, with the logs checked against it (``check_logs``).

        Incomplete checkpoints are passed over (and named in ``notes``). Raises
        ``RunStoreError`` when checkpoints exist but none is complete, or when the logs do not
        fit the newest complete one.
        """
        found = self._checkpoints()
        complete = [p for _, p, problem in found if problem is None]
        notes = [f"checkpoint {p.name} is incomplete ({problem}); it is skipped"
                 for step, p, problem in found
                 if problem and (not complete or step > int(complete[0].name[5:]))]
        try:
            pointer = _read_json(self.checkpoint_dir / "latest.json", "latest checkpoint")
            named = pointer.get("path") if isinstance(pointer, dict) else None
        except RunStoreError as exc:
            named = None
            if (self.checkpoint_dir / "latest.json").exists():
                notes.append(str(exc))
        if complete and named not in (None, complete[0].name):
            notes.append(f"latest.json names {named}, which is missing or incomplete")
        if not complete:
            if found:
                raise RunStoreError(
                    f"{self.path} has checkpoints but none is complete ({'; '.join(notes)}): "
                    "there is nothing safe to resume from. Nothing was changed; start a new run "
                    "with --out (or --overwrite to replace this one).")
            return ResumePoint(None, None, (), tuple(notes))
        state = self.checkpoint_state(complete[0])
        self.check_logs(state, complete[0].name)
        if notes:
            notes.append(f"resuming from {complete[0].name}, the newest complete checkpoint")
        return ResumePoint(complete[0], state, tuple(complete[1:]), tuple(notes))

    def mark_latest(self, path: Path) -> None:
        """Point latest.json at ``path`` (after resuming from an older checkpoint)."""
        self._check_writer()
        write_json_atomic(self.checkpoint_dir / "latest.json",
                          {"step": int(path.name[5:]), "path": path.name})

    def _prune(self, keep: int) -> None:
        """Keep the newest ``keep`` complete checkpoints; drop incomplete ones older than the
        newest complete one (nothing can resume from them) and leftover temporary folders."""
        found = self._checkpoints()
        complete = [p for _, p, problem in found if problem is None]
        newest = int(complete[0].name[5:]) if complete else 0
        for old in complete[keep:]:
            shutil.rmtree(old, ignore_errors=True)
        for step, p, problem in found:
            if problem and step < newest:
                shutil.rmtree(p, ignore_errors=True)
        for tmp in self.checkpoint_dir.glob(".tmp-step-*"):
            shutil.rmtree(tmp, ignore_errors=True)

    # -- summaries ------------------------------------------------------------------------------
    def write_summary(self, summary: dict) -> None:
        self._check_writer()
        write_json_atomic(self.path / "summary.json", summary)

    def summary(self) -> dict | None:
        path = self.path / "summary.json"
        if not path.exists():
            return None
        data = _read_json(path, "the run's summary")
        if not isinstance(data, dict):
            raise RunStoreError(f"{path} is damaged (not a JSON object)")
        return data


def describe_run(path: str | Path) -> str:
    """A short text summary of a run folder (what ``python -m workbench inspect`` prints)."""
    from .settings import SFTSettings, TrainSettings

    run = Run.open(path)
    s = (SFTSettings if "sft" in run.settings else TrainSettings).from_dict(run.settings)
    metrics = run.metrics()
    evals = run.evals()
    try:
        lines = _describe(run, s, metrics, evals)
    except (KeyError, TypeError) as exc:
        raise RunStoreError(f"{run.path}: a log row lacks a field ({exc}); the logs are damaged") \
            from None
    ckpt = run.latest_checkpoint()
    lines.append(f"latest checkpoint: {ckpt.name if ckpt else 'none'}")
    summary = run.summary()
    lines.append("finished" if summary else "not finished (resume with --resume)")
    traces = run.traces(step=metrics[-1]["step"]) if metrics else []
    if traces:
        best = max(traces, key=lambda t: t.get("reward", float("-inf")))
        lines.append(f"a best completion of the last step (reward {best.get('reward', 0):.2f}):")
        lines.extend("    " + ln for ln in str(best.get("completion", "")).splitlines()[:8])
    return "\n".join(lines)


def _describe(run: Run, s, metrics: list[dict], evals: list[dict]) -> list[str]:
    if hasattr(s, "sft"):                               # an SFT run: no rewards, a loss
        lines = [f"run: {run.path}", f"model: {s.model.model}  task: {s.task.name}  SFT on "
                 f"{s.sft.traces or 'the task teacher traces'}  steps: {len(metrics)}/{s.steps}"]
        if metrics:
            k = max(1, min(10, len(metrics) // 5))
            lines.append(f"completion loss: {sum(m['loss'] for m in metrics[:k]) / k:.3f} "
                         f"(first {k} steps) -> {sum(m['loss'] for m in metrics[-k:]) / k:.3f}")
        return lines + [_eval_line(e) for e in evals]
    lines = [f"run: {run.path}",
             f"model: {s.model.model}  task: {s.task.name}  group_size: {s.grpo.group_size}  "
             f"loss: {s.grpo.loss_type}  steps: {len(metrics)}/{s.steps}"]
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
    return lines + [_eval_line(e) for e in evals]


def _eval_line(e: dict) -> str:
    return (f"held-out accuracy ({e['label']}, step {e['step']}): {e['accuracy']:.3f} "
            f"on {e['n']} problems")
