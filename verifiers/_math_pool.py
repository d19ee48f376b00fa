"""A small pool of persistent sympy worker processes with hard time and memory bounds.

Why processes and not ``signal.alarm``: an alarm only works on the main thread, and a thread
cannot be stopped, so the only bound that holds from any thread is a process we can kill. Why
``subprocess`` and not ``multiprocessing``: a spawned multiprocessing child re-imports the caller's
``__main__`` (a script without a ``__main__`` guard would run again), and a daemonic worker (a
DataLoader, a Pool) may not start multiprocessing children at all; a plain child process avoids
both. Workers start lazily, in the background, and stay up; a worker that overruns is killed and
a replacement starts at once, so the next call finds one warm.

Covers: wall-clock time per call (from any thread, from worker processes), memory (RLIMIT_AS in
the child), CPU per job (RLIMIT_CPU, a backstop if the parent dies), fork (a forked child gets a
fresh pool). Does not cover: the first sympy call in a process pays the worker start (~1 s); a
single call returns ``timeout`` rather than wait longer than its budget, batches wait for it.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

STARTUP_LIMIT_S = 60.0          # a worker that is not ready by then is given up
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from verifiers._math_sympy import serve; "
         "serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))")


class _Worker:
    """One child process and the two pipes to it."""

    def __init__(self, memory_mb: int):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, _ROOT, str(to_child_r), str(from_child_w),
                 str(memory_mb)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.outbox = Connection(to_child_w, readable=False)
        self.inbox = Connection(from_child_r, writable=False)

    def wait_ready(self, timeout: float) -> bool:
        try:
            return self.inbox.poll(timeout) and self.inbox.recv()[0] == "ready"
        except (EOFError, OSError):
            return False

    def kill(self):
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for conn in (self.outbox, self.inbox):
            try:
                conn.close()
            except OSError:
                pass


class WorkerPool:
    """Up to ``max_workers`` sympy workers shared by every thread of this process."""

    def __init__(self, max_workers: int = 2, memory_mb: int = 1024):
        self.max_workers = max_workers
        self.memory_mb = memory_mb
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._alive = 0               # started or starting, busy or idle

    # -- lifecycle ----------------------------------------------------------------------------
    def _spawn(self):
        """Start one worker in the background (call with the lock held)."""
        self._alive += 1
        threading.Thread(target=self._start_one, daemon=True, name="math-verifier-start").start()

    def _start_one(self):
        worker = None
        try:
            worker = _Worker(self.memory_mb)
            ready = worker.wait_ready(STARTUP_LIMIT_S)
        except OSError:
            ready = False
        with self._cond:
            if ready:
                self._idle.append(worker)
            else:
                self._alive -= 1
            self._cond.notify_all()
        if not ready and worker is not None:
            worker.kill()

    def warm(self, workers: int = 1, wait_s: float = STARTUP_LIMIT_S) -> int:
        """Start workers until ``workers`` exist; wait up to wait_s for them. Returns idle count."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            self.max_workers = max(self.max_workers, workers)
            while self._alive < workers:
                self._spawn()
            while len(self._idle) < workers and self._alive >= workers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return len(self._idle)

    def shutdown(self):
        with self._cond:
            idle, self._idle = self._idle, []
            self._alive -= len(idle)
        for worker in idle:
            worker.kill()

    # -- one job ------------------------------------------------------------------------------
    def _acquire(self, deadline: float):
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._alive < self.max_workers:
                    self._spawn()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def _release(self, worker: _Worker):
        with self._cond:
            self._idle.append(worker)
            self._cond.notify_all()

    def _discard(self, worker: _Worker):
        worker.kill()
        with self._cond:
            self._alive -= 1
            if self._alive == 0:
                self._spawn()          # have a warm replacement ready for the next call
            self._cond.notify_all()

    def run(self, payload, timeout_s: float):
        """Send one job; ('ok', ...) / ('error', why, steps) from the worker, or ('timeout', why)."""
        deadline = time.monotonic() + timeout_s
        worker = self._acquire(deadline)
        if worker is None:
            return ("timeout", "no sympy worker was free (or started) within the time limit")
        try:
            worker.outbox.send(payload)
            if worker.inbox.poll(max(0.0, deadline - time.monotonic())):
                result = worker.inbox.recv()
                self._release(worker)
                return result
        except (EOFError, OSError):
            self._discard(worker)
            return ("error", "the sympy worker died (memory limit?)", ())
        self._discard(worker)
        return ("timeout", f"sympy ran past {timeout_s:.2f} s: worker killed and replaced")


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> WorkerPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool()
        return _POOL


def _after_fork_in_child():
    # The parent's workers, pipes and lock are not ours to use: start afresh when needed.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


def _shutdown():
    if _POOL is not None:
        _POOL.shutdown()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shutdown)
