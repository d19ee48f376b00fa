"""The limited child process: run untrusted Python with limits, and say exactly what is limited.

How a run works. The first run starts a small *fork server* (this file run as a script with
``python -I -S`` and an almost empty environment). For each run it forks the sandbox's *init* into a
new PID namespace; init enters new network, mount and IPC namespaces, mounts a private ``/proc``
and ``/tmp``, and forks the *program process* (inside the run's memory cgroup, which init
joined), which drops to a fresh unprivileged uid, sets its rlimits and seccomp filter and runs the harness
(``_code_harness.py``, loaded once by the fork server) without starting a new interpreter. For
assert-style tests init then becomes the *tester*, of a second fresh uid, which alone holds the
result channel and talks to the program over a pipe pair (``run(..., tester=...)``). The fork
server watches every run (pidfd, wall clock, the parent's kill pipe) and reports how it ended.
Where runs get a memory cgroup, the fork server keeps a few *spare* inits (``ps`` shows them
as ``wb-spare``) that have already joined a fresh one, since moving a process into a cgroup waits
for the kernel. That is why a run costs milliseconds, not an interpreter start-up.

Covered, as root on Linux >= 5.3 (this project's machines and CI); each claim has a test in
``tests/test_sandbox.py``:

- **Wall clock**: after ``timeout_s`` the fork server kills init, and the kernel kills every process
  in the run's PID namespace, including ones that called ``setsid()`` or double-forked.
- **CPU time**: ``RLIMIT_CPU`` per process (``cpu_s``, whole seconds, default ``timeout_s``).
- **Memory, per process**: ``RLIMIT_AS`` (``memory_mb``); allocations past it raise
  ``MemoryError``.
- **Memory, the run as a whole**: where the kernel offers a memory cgroup (v1, or v2 with the
  controller delegated; ``isolation()["memory"]`` says which), each run gets its own with a limit
  of ``memory_mb + tmp_mb``, joined by the program process before it runs, so all its processes,
  its ``/tmp`` files, pipes and any file it keeps in memory count together; past the limit the
  kernel kills a process of the run and the result says ``memory_exceeded``. The cgroup is removed
  with the run. Files in memory that would escape every limit cannot be made: seccomp refuses
  ``memfd_create``, ``mount`` and new namespaces (``unshare``/``clone`` with ``CLONE_NEW*``; so no
  private tmpfs in a user namespace of its own).
- **Kernel state**: seccomp also refuses the keyring calls (a fresh uid's keyring would outlive the
  run), ``io_uring``, ``bpf``, ``userfaultfd`` and ``perf_event_open`` (x86_64 and aarch64).
- **Processes**: each run has its own uid, so ``RLIMIT_NPROC`` (``max_processes``, threads
  included) bounds a fork bomb to that run alone. (Root ignores ``RLIMIT_NPROC``; the uid switch is
  what makes it hold when the parent is root.)
- **Files**: ``RLIMIT_FSIZE`` (``file_mb``) per file. The places others may write (``/tmp``,
  ``/var/tmp``, ``/dev/shm``, ``/run/lock``) are one private tmpfs of ``tmp_mb``, which is also the
  working directory: it starts empty and disappears with the run. Everything else is closed to the
  program's uid, except files writable by everyone on the host (none on this project's machines).
- **Environment**: the program sees ``PATH``, ``HOME=/tmp``, ``TMPDIR=/tmp`` and ``LANG`` only, and
  ``/proc`` shows the run's own processes only: the parent's environment, command line and memory
  cannot be read.
- **The tester**: another uid, not dumpable: the program cannot signal it, trace it, or read its
  memory or descriptors; the test source and the expected values were never in the program's
  process (``_code_harness`` says how a verdict is reached).
- **Python**: isolated (``-I``: no user site, no ``PYTHON*`` variables, no script directory on
  ``sys.path``) and without ``site`` (``-S``): only the standard library can be imported.
- **Output**: stdout and stderr are each capped at ``output_bytes``; past it the run is killed.
- **Network**: a new network namespace with only a loopback that is down: no connection, not even
  to the host's localhost, and no reach to the host's abstract Unix sockets.
- **Signals**: the program cannot signal the parent or any process outside the run: they are not in
  its PID namespace and belong to another uid. ``no_new_privs`` is set, so set-uid programs do not
  raise its privileges.
- **Cleanup**: no process of a run outlives it (init reaps them; the namespace dies with init);
  if the parent process dies its runs are killed (the kill pipe closes), and if the fork server dies
  they die with it (``PR_SET_PDEATHSIG``) and the parent reports ``infra_error``.

Not covered (``test_not_covered_*`` show each that can be shown):

- Not a security boundary against kernel exploits: the seccomp filter above is a deny list, not an
  allow list, and there is no LSM profile. The program is an ordinary unprivileged uid of the host
  kernel.
- Without a memory cgroup (cgroup v2 whose memory controller is not delegated to us, or not root),
  memory is per process: a run that forks may use up to ``max_processes x memory_mb`` plus
  ``tmp_mb``, plus pipe buffers (bounded by ``open_files`` per process). CPU time is per process
  too; the wall clock bounds the total.
- Other architectures than x86_64 and aarch64 get no seccomp filter (``isolation()["seccomp"]``).
- Files readable by everyone stay readable (``/etc``, the repository, the Python installation).
  Directories closed to others (``/root``, homes with mode 700) stay closed; where the Python
  installation lives under one, only the installation is shown there, read-only.
- Filesystem Unix sockets that are writable by everyone stay reachable (none on this machine).
- A fork server killed with SIGKILL leaves its (empty) cgroup directory; the next one removes it.

Where the kernel refuses namespaces (a container without ``CAP_SYS_ADMIN``), the fork server does
what it can, and ``isolation()`` says what that is. As root: rlimits, the uid switch, seccomp and
the memory cgroup where available, a kill of the process group and of every process of the run's
uid, and a temporary working directory that is
removed afterwards, along with anything the uid left in ``/tmp`` and the like (``tmp_mb`` does not
hold there: only ``file_mb`` per file and the wall clock bound the writes). The network is open,
``/proc`` shows the host's processes (not their environments), and if Python lives in a directory
closed to others, stdlib modules the fork server did not preload cannot be imported
(``test_fallback_*`` run this mode here). Without root, with unprivileged user namespaces the fork
server enters one and keeps the namespaces but not the uid switch, so ``RLIMIT_NPROC`` counts all
of the user's processes, and the tester shares the program's uid (it is not dumpable, but the
program keeps its capabilities inside that user namespace: the tester's separation from it is not
guaranteed there); with neither, rlimits, seccomp and the process-group kill remain. The non-root modes are not exercised by the tests (CI runs as root).
"""
from __future__ import annotations

import builtins
import ctypes
import fcntl
import gc
import json
import os
import resource
import secrets
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

_HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_code_harness.py")
_SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_GRACE_S = 10.0                     # the parent's backstop past timeout_s, should the server hang
_PROGRAM_EXIT_S = 0.5               # how long the tester waits for the program to exit after
_RECORD_BYTES = 16 << 20            # the result channel (a case record is at most ~2 KB)
_UID_SPAN = 1 << 20                 # concurrent runs of one parent get distinct uids in this span
_NAMESPACES = True                  # False: act as if the kernel refused them (tests the fallback)


@dataclass(frozen=True)
class Limits:
    """What one run may use. Shrink or vary with ``dataclasses.replace``."""

    timeout_s: float = 3.0          # wall clock for the whole run; then every process in it dies
    cpu_s: float | None = None      # CPU seconds per process (RLIMIT_CPU); None: timeout_s
    memory_mb: int = 512            # address space per process (RLIMIT_AS)
    max_processes: int = 16         # processes + threads of the run, the first one included
    file_mb: int = 16               # largest file the program may write (RLIMIT_FSIZE)
    tmp_mb: int = 64                # the private /tmp, which is also the working directory
    output_bytes: int = 1 << 20     # stdout and stderr each; past it the run is killed
    open_files: int = 64            # file descriptors per process (RLIMIT_NOFILE)


@dataclass(frozen=True)
class SandboxResult:
    """What came back from one run. ``record`` is what the harness wrote to its result fd (fd 3)."""

    exit_code: int | None           # None when a signal ended the program (or it never started)
    signal: int | None              # the signal that ended it, e.g. 24 (SIGXCPU) or 9
    timed_out: bool                 # wall clock or CPU limit
    output_exceeded: bool           # stdout or stderr passed output_bytes
    stdout: bytes
    stderr: bytes
    record: bytes
    wall_s: float
    cpu_s: float
    infra_error: str | None = None  # the sandbox itself failed: say so, never blame the program
    memory_exceeded: bool = False   # the run's memory cgroup killed a process (all of it counted)


def run(payload: dict, *, stdin: bytes = b"", limits: Limits = Limits(),
        tester: dict | None = None) -> SandboxResult:
    """Run the harness on ``payload`` (JSON-able; see ``_code_harness.start``) in a fresh sandbox.

    ``stdin`` is what the program reads; it is a file, so reading past it gives EOF, never a hang.
    ``tester``: a payload for a second process of another uid (``_code_harness.start_tester``)
    that alone holds the result channel and talks to the program over a pipe pair; the run ends
    when it does. Without it, the program process writes the result channel itself.
    Never raises for anything the program does; sandbox failures come back as ``infra_error``.
    """
    try:
        server = _server()
        uid = server.next_uid()
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        return _infra(f"fork server unavailable: {exc}")
    job = {
        "uid": uid,
        "timeout_s": limits.timeout_s,
        "cpu_s": limits.cpu_s if limits.cpu_s is not None else limits.timeout_s,
        "memory_mb": limits.memory_mb,
        "max_processes": limits.max_processes,
        "file_mb": limits.file_mb,
        "tmp_mb": limits.tmp_mb,
        "open_files": limits.open_files,
        "tester_uid": uid + _UID_SPAN,
    }
    ours, theirs = [], []
    try:
        theirs.append(_memfd("wb-stdin", stdin))
        for _ in range(3):                                   # stdout, stderr, result record
            r, w = os.pipe()
            ours.append(r)
            theirs.append(w)
        theirs.append(_memfd("wb-payload", json.dumps(payload).encode()))
        status_r, status_w = os.pipe()
        kill_r, kill_w = os.pipe()
        ours += [status_r, kill_w]
        theirs += [status_w, kill_r]
        theirs.append(_memfd("wb-tester", json.dumps(tester).encode() if tester else b""))
        # child fds: stdin, stdout, stderr, result, payload, status, kill, tester payload
        server.submit(job, theirs)
    except Exception as exc:  # noqa: BLE001
        for fd in ours:
            os.close(fd)
        return _infra(f"could not start the run: {exc}")
    finally:
        for fd in theirs:
            os.close(fd)
    try:
        return _collect(*ours, limits=limits)
    finally:
        for fd in ours:
            os.close(fd)


def run_python(code: str, *, stdin: bytes = b"", limits: Limits = Limits()) -> SandboxResult:
    """Run ``code`` as ``__main__``, a script reading stdin, as ``python -I -S solution.py``."""
    return run({"mode": "script", "code": code, "nonce": ""}, stdin=stdin, limits=limits)


def isolation() -> dict:
    """What this machine gives a run: ``{"namespaces", "uid_switch", "reason", ...}``."""
    return dict(_server().isolation)


def shutdown() -> None:
    """Stop the fork server (the next run starts a new one). Running checks are killed."""
    global _SERVER
    with _SERVER_LOCK:
        server, _SERVER = _SERVER, None
    if server is not None:
        server.close()


# ----------------------------------------------------------------------------------------------
# Parent side


def _infra(why: str) -> SandboxResult:
    return SandboxResult(None, None, False, False, b"", b"", b"", 0.0, 0.0, infra_error=why)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _collect(out_r: int, err_r: int, res_r: int, status_r: int, kill_w: int, *,
             limits: Limits) -> SandboxResult:
    """Read the run's pipes until the fork server reports it; kill it past an output cap."""
    caps = {out_r: limits.output_bytes, err_r: limits.output_bytes, res_r: _RECORD_BYTES,
            status_r: 1 << 16}
    bufs = {fd: bytearray() for fd in caps}
    exceeded, killed = set(), False
    start = time.monotonic()
    deadline = start + limits.timeout_s + _GRACE_S
    with selectors.DefaultSelector() as sel:
        for fd in caps:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            if status_r not in sel.get_map():                 # reported: drain what is left
                deadline = min(deadline, time.monotonic() + 1.0)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                fd = key.fd
                data = os.read(fd, 1 << 16)
                if not data:
                    sel.unregister(fd)
                    continue
                room = caps[fd] - len(bufs[fd])
                bufs[fd] += data[:room]
                if len(data) > room and fd not in exceeded:
                    exceeded.add(fd)
                    if not killed:
                        killed = _kill(kill_w)
    status = _parse_status(bytes(bufs[status_r]))
    wall = status.get("wall_s", time.monotonic() - start)
    if "wall_s" not in status:
        _kill(kill_w)
        error = status.get("error") or "the fork server reported nothing (did it die?)"
    else:
        error = status.get("error")
    code = status.get("exit")                                    # exit code, or -signal
    sig = -code if code is not None and code < 0 else None
    timed_out = (bool(status.get("timed_out")) or sig == signal.SIGXCPU
                 or bool(status.get("program_cpu_limited")))

    return SandboxResult(
        exit_code=code if code is not None and code >= 0 else None,
        signal=sig,
        timed_out=timed_out and not error,
        output_exceeded=bool(exceeded & {out_r, err_r}),
        stdout=bytes(bufs[out_r]),
        stderr=bytes(bufs[err_r]),
        record=bytes(bufs[res_r]),
        wall_s=float(wall),
        cpu_s=float(status.get("cpu_s", 0.0)),
        infra_error=error,
        memory_exceeded=bool(status.get("oom_killed")) and not error,
    )


def _kill(kill_w: int) -> bool:
    try:
        os.write(kill_w, b"k")
    except OSError:
        pass                                                      # the run is over
    return True


def _parse_status(raw: bytes) -> dict:
    status: dict = {}
    for line in raw.splitlines():
        try:
            status.update(json.loads(line))
        except ValueError:
            status["error"] = f"unreadable status line {line[:80]!r}"
    return status


class _ForkServer:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(theirs.fileno()),
                 _HARNESS, "namespaces" if _NAMESPACES else "no-namespaces"],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=_SERVER_ENV, cwd="/", start_new_session=True)
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(60)
        hello = self.sock.recv(1 << 16)
        self.sock.settimeout(None)
        if not hello:
            self.close()
            raise RuntimeError("the fork server exited during start-up")
        self.isolation = json.loads(hello)
        if "error" in self.isolation:
            self.close()
            raise RuntimeError(self.isolation["error"])
        self.lock = threading.Lock()
        self.uid_base = 1_500_000_000 + secrets.randbelow(1 << 29)
        self.uid_next = 0

    def next_uid(self) -> int:
        with self.lock:
            self.uid_next += 1
            return self.uid_base + self.uid_next % _UID_SPAN

    def submit(self, job: dict, fds: list[int]) -> None:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(job).encode()], fds)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.sock.close()                              # the server sees EOF, waits for its runs
        try:
            self.process.wait(timeout=_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_SERVER: _ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def _server() -> _ForkServer:
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.alive():
            if _SERVER is not None:
                _SERVER.close()
            _SERVER = _ForkServer()
        return _SERVER


def _forget_server_in_child() -> None:
    """After os.fork() in the parent: the child starts its own server when it needs one."""
    global _SERVER, _SERVER_LOCK
    if _SERVER is not None:
        _SERVER.sock.close()                           # so the server sees EOF when we are done
    _SERVER, _SERVER_LOCK = None, threading.Lock()


if __name__ != "__main__":
    import atexit

    os.register_at_fork(after_in_child=_forget_server_in_child)
    atexit.register(shutdown)


# ----------------------------------------------------------------------------------------------
# Fork-server side: everything below runs in the fork server and its children (stdlib only).

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_RUN_NS_FLAGS = _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWNET     # init's own; PID: the server
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 1, 36, 38
_PR_SET_DUMPABLE, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _PR_SET_NAME = 4, 22, 2, 15
SPARE_NAME = b"wb-spare"                # an idle init waiting for a run (not a run's process)
_WRITABLE_DIRS = ("/var/tmp", "/dev/shm", "/run/lock")
_LIBC = None


def _libc_call(name: str, *args) -> None:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    if getattr(_LIBC, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{args!r}: {os.strerror(errno)}")


def _mount(source, target, fstype, flags, data=None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _libc_call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def _probe(allowed: bool) -> dict:
    """What this machine allows, decided once. Without root the fork server itself enters a user
    namespace (becoming root there), so that it can make the other namespaces for its runs."""
    root = os.geteuid() == 0
    user_ns = False
    if not root and allowed:
        try:
            uid, gid = os.getuid(), os.getgid()
            _libc_call("unshare", _CLONE_NEWUSER)
            for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map",
                               f"0 {uid} 1"), ("/proc/self/gid_map", f"0 {gid} 1")):
                with open(path, "w") as f:
                    f.write(text)
            user_ns = True
        except OSError:
            pass
    namespaces = allowed and (root or user_ns) and _works_in_child(
        lambda: _libc_call("unshare", _CLONE_NEWPID | _RUN_NS_FLAGS))
    if namespaces:
        reason = ("root: namespaces + uid switch" if root else
                  "not root: namespaces in a user namespace, no uid switch")
    else:
        reason = ("namespaces unavailable: rlimits, uid switch and process-group kill only"
                  if root else "not root and no user namespaces: rlimits and process-group kill"
                  " only; the network is open")
    seccomp = _SECCOMP_FILTER is not None and _works_in_child(_seccomp_works)
    cgroup, cgroup_why = _cgroup_base() if root else (None, "not root: no memory cgroup")
    return {"namespaces": bool(namespaces), "uid_switch": root, "user_ns": user_ns,
            "reason": reason, "seccomp": seccomp, "memory_cgroup": cgroup,
            "memory": ("one memory cgroup per run: every process and in-memory file counted"
                       if cgroup else f"per process only ({cgroup_why})")}


# Memory as a whole: one cgroup per run, joined by the program process (its children follow), so
# anonymous memory, tmpfs and memfd pages and kernel memory (pipes) of the run count together.

_PENDING_CGROUPS: list[str] = []            # runs' cgroups that could not be removed yet
_CGROUP_COUNT = 0
_SPARES = min(4, os.cpu_count() or 1)       # inits kept waiting inside a fresh cgroup


class _Spare:
    """An init forked ahead of time that moved itself into a fresh cgroup (moving waits for the
    kernel; done here, off a run's clock) and waits for a job on ``sock``."""

    def __init__(self, mode, harness, own_pidns):
        self.cgroup = _make_run_cgroup(mode["memory_cgroup"])
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = os.getpid()
        if own_pidns is not None:
            _libc_call("unshare", _CLONE_NEWPID)
        try:
            self.pid = os.fork()
            if self.pid == 0:
                _child_main(_spare_main, theirs.fileno(), self.cgroup, mode, harness, server)
        finally:
            if own_pidns is not None:
                _libc_call("setns", own_pidns, _CLONE_NEWPID)
            theirs.close()

    def start(self, job: dict, fds: list[int]) -> int:
        """Hand it the job (it becomes the run's init); its pid. OSError if it is gone."""
        _limit_run_cgroup(self.cgroup, job)
        socket.send_fds(self.sock, [json.dumps(job).encode()], fds)
        self.sock.close()
        return self.pid

    def discard(self) -> None:
        self.sock.close()                               # it exits; _reap_orphans reaps it
        _PENDING_CGROUPS.append(self.cgroup)


def _spare_main(sock_fd: int, cgroup: str, mode, harness, server) -> None:
    _close_all_but({0, 1, 2, sock_fd})
    _libc_call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc_call("prctl", _PR_SET_NAME, SPARE_NAME, 0, 0, 0)      # what ps shows while it waits
    _join_cgroup(cgroup, 0)
    sock = socket.socket(fileno=sock_fd)
    msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 16)
    if not msg:
        os._exit(0)
    _libc_call("prctl", _PR_SET_NAME, b"wb-init", 0, 0, 0)
    job = json.loads(msg)
    _init(job, fds, mode, harness, job.pop("workdir"), server)


def _cgroup_base() -> tuple[str | None, str]:
    """(a fresh cgroup under our own where runs' cgroups go, why not) for cgroup v2 or v1."""
    try:
        with open("/proc/self/cgroup") as f:
            own = dict(line.rstrip("\n").split(":", 2)[1:] for line in f if line.count(":") >= 2)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError as exc:
        return None, f"cannot read /proc/self/cgroup: {exc.strerror}"
    for fields in mounts:
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[-1].split(",")
        version = 2 if fstype == "cgroup2" else 1 if fstype == "cgroup" and "memory" in options \
            else None
        path = own.get("" if version == 2 else "memory")
        if version is None or path is None:
            continue
        root, mountpoint = fields[3], fields[4]
        relative = path[len(root):] if path.startswith(root) else path
        base = os.path.join(mountpoint, relative.lstrip("/"), f"wb-sandbox-{os.getpid()}")
        _remove_stale_cgroups(os.path.dirname(base))
        try:
            os.mkdir(base)
        except OSError as exc:
            return None, f"cannot create a cgroup in {os.path.dirname(base)}: {exc.strerror}"
        if version == 2 and not os.path.exists(os.path.join(base, "memory.max")):
            try:                                         # needs a parent without processes
                with open(os.path.join(os.path.dirname(base), "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            except OSError as exc:
                os.rmdir(base)
                return None, f"cgroup v2 without the memory controller delegated: {exc.strerror}"
        return base, ""
    return None, "no memory cgroup hierarchy mounted"


def _remove_stale_cgroups(parent: str) -> None:
    """Cgroups of fork servers that died without cleaning up (SIGKILL): empty, so removable."""
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith("wb-sandbox-")]
    except OSError:
        return
    for entry in entries:
        pid = entry.name.rsplit("-", 1)[1]
        if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
            continue
        for run in (e.path for e in os.scandir(entry.path) if e.name.startswith("run-")):
            _remove_run_cgroup(run)
        try:
            os.rmdir(entry.path)
        except OSError:
            pass


def _cgroup_files(path: str) -> tuple[str, ...]:
    """(limit file, swap limit file, events file) of cgroup v2 or v1."""
    if os.path.exists(os.path.join(path, "memory.max")):
        return "memory.max", "memory.swap.max", "memory.events"
    return "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control"


def _make_run_cgroup(base: str) -> str:
    global _CGROUP_COUNT
    _CGROUP_COUNT += 1
    path = os.path.join(base, f"run-{_CGROUP_COUNT}")
    os.mkdir(path)
    return path


def _limit_run_cgroup(path: str, job: dict) -> None:
    limit, swap, _ = _cgroup_files(path)
    total = (job["memory_mb"] + job["tmp_mb"]) << 20     # the program's memory and its /tmp
    for name, value in ((limit, total), (swap, 0 if swap == "memory.swap.max" else total)):
        try:
            with open(os.path.join(path, name), "w") as f:
                f.write(str(value))
        except FileNotFoundError:
            if name == limit:
                raise


def _join_cgroup(path: str, pid: int) -> int:
    """Move ``pid`` (as this process sees it) into the cgroup; 0 on success."""
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(pid))
    return 0


def _remove_run_cgroup(path: str | None) -> bool:
    """Remove a finished run's cgroup (and any left from before); whether it killed for memory."""
    if path is None:
        return False
    oom = False
    try:
        with open(os.path.join(path, _cgroup_files(path)[2])) as f:
            oom = any(line.split()[:1] == ["oom_kill"] and line.split()[1] != "0" for line in f)
    except (OSError, IndexError):
        pass
    for pending in [*_PENDING_CGROUPS, path]:
        try:
            os.rmdir(pending)
            if pending in _PENDING_CGROUPS:
                _PENDING_CGROUPS.remove(pending)
        except FileNotFoundError:
            if pending in _PENDING_CGROUPS:
                _PENDING_CGROUPS.remove(pending)
        except OSError:
            if pending not in _PENDING_CGROUPS:
                _PENDING_CGROUPS.append(pending)
    return oom


def _remove_cgroup_base(mode) -> None:
    base = mode.get("memory_cgroup")
    deadline = time.monotonic() + 2.0
    while base and time.monotonic() < deadline:
        for pending in list(_PENDING_CGROUPS):
            _remove_run_cgroup(pending)
        try:
            os.rmdir(base)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


# seccomp: calls that would escape the memory bound or leave kernel state behind fail with EPERM:
# memfd_create, mount and new namespaces (a private tmpfs), keyrings (a fresh uid's keyring
# outlives the run), and io_uring, bpf, userfaultfd, perf_event_open (kernel surface no program
# here needs). clone3's flags are out of a filter's reach: it fails with ENOSYS, and glibc falls
# back to clone, whose flags are checked. Other architectures than these two: no filter.

_SECCOMP_ARCH = {  # machine: (AUDIT_ARCH, {syscall: number}, lowest foreign-ABI number)
    "x86_64": (0xC000003E, dict(memfd_create=319, mount=165, umount2=166, pivot_root=155,
                                unshare=272, setns=308, keyctl=250, add_key=248, request_key=249,
                                io_uring_setup=425, bpf=321, userfaultfd=323, perf_event_open=298,
                                open_tree=428, move_mount=429, fsopen=430, fsconfig=431,
                                fsmount=432, mount_setattr=442, memfd_secret=447, clone3=435,
                                clone=56), 0x40000000),
    "aarch64": (0xC00000B7, dict(memfd_create=279, mount=40, umount2=39, pivot_root=41,
                                 unshare=97, setns=268, keyctl=219, add_key=217, request_key=218,
                                 io_uring_setup=425, bpf=280, userfaultfd=282, perf_event_open=241,
                                 open_tree=428, move_mount=429, fsopen=430, fsconfig=431,
                                 fsmount=432, mount_setattr=442, memfd_secret=447, clone3=435,
                                 clone=220), None),
}
_CLONE_NAMESPACES = 0x7E020000              # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}


def _seccomp_filter() -> bytes | None:
    spec = _SECCOMP_ARCH.get(os.uname().machine)
    if spec is None:
        return None
    arch, numbers, foreign = spec
    allow, kill = 0x7FFF0000, 0x80000000
    eperm, enosys = 0x00050000 | 1, 0x00050000 | 38

    def op(code, k, jt=0, jf=0):
        return code.to_bytes(2, sys.byteorder) + bytes([jt, jf]) + k.to_bytes(4, sys.byteorder)

    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    prog = [op(ld, 4), op(jeq, arch, 1, 0), op(ret, kill), op(ld, 0)]
    if foreign is not None:                              # x32 calls on x86_64
        prog += [op(jge, foreign, 0, 1), op(ret, eperm)]
    for name, number in numbers.items():
        if name != "clone":
            prog += [op(jeq, number, 0, 1), op(ret, enosys if name == "clone3" else eperm)]
    low_arg0 = 16 if sys.byteorder == "little" else 20
    prog += [op(jeq, numbers["clone"], 0, 3), op(ld, low_arg0), op(jset, _CLONE_NAMESPACES, 0, 1),
             op(ret, eperm), op(ret, allow)]
    return b"".join(prog)


_SECCOMP_FILTER = _seccomp_filter()


def _install_seccomp() -> None:
    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    program = Fprog(len(_SECCOMP_FILTER) // 8, _SECCOMP_FILTER)
    _libc_call("prctl", _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0)


def _seccomp_works() -> None:
    _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _install_seccomp()
    try:
        os.memfd_create("probe")
    except PermissionError:
        os.fork() or os._exit(0)                         # plain fork still works
        return
    raise RuntimeError("memfd_create was not refused")


def _works_in_child(fn) -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _hidden_python_dirs() -> list[tuple[str, list[str]]]:
    """(closed dir, [python dirs inside it]) for every python dir that another uid cannot reach.

    On this project's machines Python lives in /root/.pyenv and /root is mode 700: the sandbox
    covers /root with an empty tmpfs and binds just the installation into it, read-only.
    """
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix,
                                           os.path.dirname(os.path.realpath(sys.executable)))}
    needed = {p for p in needed if not any(p.startswith(q + "/") for q in needed)}
    covers: dict[str, list[str]] = {}
    for path in sorted(needed):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:i])
            if not os.stat(ancestor).st_mode & 0o001:           # not traversable by others
                covers.setdefault(ancestor, []).append(path)
                break
    return sorted(covers.items())


class _Run:
    """The fork server's record of one run in progress."""

    def __init__(self, job: dict, init: int, status_fd: int, kill_fd: int, workdir, start: float):
        self.job, self.init, self.workdir, self.start = job, init, workdir, start
        self.status_fd, self.kill_fd = status_fd, kill_fd
        self.pidfd = os.pidfd_open(init)
        self.deadline = start + job["timeout_s"]
        self.timed_out = False


def _serve(sock_fd: int, harness_path: str, namespaces: bool) -> None:
    """The fork server: start runs, enforce their wall clock, report how they ended."""
    sock = socket.socket(fileno=sock_fd)
    try:
        # the harness gets its own builtins, so a program that patches the real ones cannot
        # change the harness's len() or repr()
        harness: dict = {"__name__": "_code_harness", "__file__": harness_path,
                         "__builtins__": dict(builtins.__dict__)}
        with open(harness_path, encoding="utf-8") as f:
            exec(compile(f.read(), harness_path, "exec"), harness)  # noqa: S102 - our own file
        harness["prepare"]()
        gc.freeze()                 # forked runs then share these pages instead of copying them
        mode = _probe(namespaces)
        mode["covers"] = _hidden_python_dirs() if mode["namespaces"] and mode["uid_switch"] else []
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY) if mode["namespaces"] else None
        _libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come here, are reaped
        sock.send(json.dumps(mode).encode())
    except BaseException as exc:  # noqa: BLE001
        sock.send(json.dumps({"error": f"fork server start-up failed: {exc!r}"}).encode())
        raise
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    runs: dict[int, _Run] = {}
    spares: list[_Spare] = []
    while sock in sel.get_map() or runs:
        _refill(spares, mode, harness, own_pidns, sock in sel.get_map())
        timeout = min((r.deadline for r in runs.values()), default=time.monotonic() + 1.0)
        for key, _ in sel.select(max(0.0, timeout - time.monotonic())):
            if key.fileobj is sock:
                if not _accept(sock, runs, sel, mode, harness, own_pidns, spares):
                    sel.unregister(sock)                 # the parent closed its end or died
                continue
            run, event = key.data
            if runs.get(run.init) is not run:
                continue                                 # finished earlier in this batch
            if event == "exit":
                _finish(run, runs, sel, mode)
            else:                                        # the parent asked, or died
                sel.unregister(run.kill_fd)
                _kill_run(run, mode)
        now = time.monotonic()
        for run in runs.values():
            if now >= run.deadline and not run.timed_out:
                run.timed_out = True
                _kill_run(run, mode)
        _reap_orphans(runs)
    _refill(spares, mode, harness, own_pidns, False)
    _remove_cgroup_base(mode)


def _refill(spares: list, mode, harness, own_pidns, wanted: bool) -> None:
    """Keep ``_SPARES`` spare inits while runs may come; let them go (and wait) once none will."""
    if not wanted:
        while spares:
            spare = spares.pop()
            spare.discard()
            os.waitpid(spare.pid, 0)
        return
    while mode.get("memory_cgroup") and len(spares) < _SPARES:
        try:
            spares.append(_Spare(mode, harness, own_pidns))
        except OSError:
            return                                      # runs then start without a spare


def _accept(sock, runs, sel, mode, harness, own_pidns, spares) -> bool:
    try:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 16)
    except OSError:
        return False
    if not msg or len(fds) != 8:
        for fd in fds:
            os.close(fd)
        return bool(msg)
    status_fd, kill_fd = fds[5], fds[6]
    os.set_blocking(status_fd, False)                   # a stuck parent never blocks the server
    try:
        run = _start_run(json.loads(msg), fds, mode, harness, own_pidns, spares)
    except Exception as exc:  # noqa: BLE001 - reported to that run's parent as infra_error
        _write_status(status_fd, error=f"could not start the run: {exc!r}", wall_s=0.0)
        os.close(status_fd)
        os.close(kill_fd)
        return True
    finally:
        for fd in (*fds[:5], fds[7]):
            os.close(fd)
    runs[run.init] = run
    sel.register(run.pidfd, selectors.EVENT_READ, (run, "exit"))
    sel.register(run.kill_fd, selectors.EVENT_READ, (run, "kill"))
    return True


def _start_run(job, fds, mode, harness, own_pidns, spares) -> _Run:
    start = time.monotonic()
    workdir = None
    if not mode["namespaces"]:
        workdir = tempfile.mkdtemp(prefix="wb-sandbox-")
        if mode["uid_switch"]:
            os.chown(workdir, job["uid"], job["uid"])
    while spares:
        spare = spares.pop(0)
        job.update(cgroup=spare.cgroup, joined=True)
        try:
            return _Run(job, spare.start({**job, "workdir": workdir}, fds), fds[5], fds[6],
                        workdir, start)
        except OSError:
            spare.discard()
    job["joined"] = False
    if mode.get("memory_cgroup"):
        job["cgroup"] = _make_run_cgroup(mode["memory_cgroup"])
        _limit_run_cgroup(job["cgroup"], job)
    server = os.getpid()
    if own_pidns is not None:
        _libc_call("unshare", _CLONE_NEWPID)            # the next child is init of a new one
    try:
        init = os.fork()
        if init == 0:
            _child_main(_init, job, fds, mode, harness, workdir, server)
    finally:
        if own_pidns is not None:                       # back, so the next run can do the same
            _libc_call("setns", own_pidns, _CLONE_NEWPID)
    return _Run(job, init, fds[5], fds[6], workdir, start)


def _kill_run(run: _Run, mode) -> None:
    """Kill init (with namespaces the kernel then kills the whole run) and its process group."""
    for kill in (os.kill, os.killpg):                   # init is not reaped yet: its pid is ours
        try:
            kill(run.init, signal.SIGKILL)
        except OSError:
            pass
    if not mode["namespaces"] and mode["uid_switch"]:
        _kill_uid(run.job["uid"])                       # what left the process group


def _finish(run: _Run, runs, sel, mode) -> None:
    if not mode["namespaces"]:
        _kill_run(run, mode)                            # init's children may still run
    _, init_status, usage = os.wait4(run.init, 0)
    del runs[run.init]
    oom = _remove_run_cgroup(run.job.get("cgroup"))
    for fd in (run.pidfd, run.kill_fd):
        if fd in sel.get_map():
            sel.unregister(fd)
    if run.workdir:
        shutil.rmtree(run.workdir, ignore_errors=True)
        if mode["uid_switch"]:
            _remove_files_of(run.job["uid"])
    _write_status(run.status_fd, timed_out=run.timed_out, oom_killed=oom,
                  wall_s=time.monotonic() - run.start,
                  cpu_s=usage.ru_utime + usage.ru_stime,
                  init=os.waitstatus_to_exitcode(init_status))
    for fd in (run.pidfd, run.status_fd, run.kill_fd):
        os.close(fd)


def _kill_uid(uid: int) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)                 # every process of that uid but this one
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _remove_files_of(uid: int) -> None:
    """Without a private /tmp: remove what the run's uid left in the places others may write."""
    for place in ("/tmp", *_WRITABLE_DIRS):
        try:
            entries = list(os.scandir(place))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _reap_orphans(runs) -> None:
    """Reap processes that were re-parented to the fork server (it is a child subreaper)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in runs:
            return                                      # a run's init: _finish reaps it
        os.waitpid(info.si_pid, 0)


def _child_main(fn, *args) -> None:
    """Run fn in a forked child and never return into the caller's loop."""
    try:
        fn(*args)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        os._exit(70)


def _write_status(fd: int, **fields) -> None:
    try:
        os.write(fd, (json.dumps(fields) + "\n").encode())
    except OSError:
        pass                                            # the parent is gone or stuck


def _close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep) + [1 << 16]:
        if low < fd:                    # closerange(n, n) closes everything from n on (3.11)
            os.closerange(low, fd)
        low = fd + 1


def _init(job, fds, mode, harness, workdir, server) -> None:
    """Sandbox init (PID 1 of the run with namespaces): isolate, start the program, reap.

    With a tester payload, init forks the program and then becomes the tester itself (one fork
    fewer); the run ends when the tests do. Otherwise init reaps until the program process
    ends. Init is in the run's memory cgroup before it forks (a spare joined it ahead of time, or
    a helper moves init while it sets up the namespaces: moving a process waits for a
    kernel-wide synchronisation, a fork lands in its parent's cgroup at no cost), so every
    process of the run is inside it. Should the cgroup's OOM killer pick init, the whole run
    ends, and the result says ``memory_exceeded``.
    """
    fds = [_move_high(fd) for fd in fds]                # clear of the numbers the children use
    status_fd = fds[5]
    try:
        _close_all_but({0, 1, 2, *fds})                 # other runs' pipes, the server's socket
        _libc_call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the server
        if not mode["namespaces"] and os.getppid() != server:
            os._exit(72)                                # the server died before prctl
        os.setsid()                                     # the run's own session and process group
        joiner = os.fork() if job.get("cgroup") and not job.get("joined") else None
        if joiner == 0:                                 # moves init (its parent) meanwhile
            _child_main(lambda: os._exit(_join_cgroup(job["cgroup"], os.getppid())))
        if mode["namespaces"]:
            _libc_call("unshare", _RUN_NS_FLAGS)
            _mount(None, "/", None, _MS_REC | _MS_PRIVATE)   # nothing mounted leaks to the host
            _mount_private_dirs(job, mode)
        if joiner and os.waitstatus_to_exitcode(os.waitpid(joiner, 0)[1]) != 0:
            raise OSError("could not join the run's memory cgroup")
        channel = tester_end = None
        if os.fstat(fds[7]).st_size:
            request_r, request_w = os.pipe()            # tester -> program
            reply_r, reply_w = os.pipe()                # program -> tester
            channel, tester_end = (request_r, reply_w), (reply_r, request_w)
        program = os.fork()
    except BaseException as exc:  # noqa: BLE001
        _write_status(status_fd, error=f"could not set up the sandbox: {exc!r}")
        os._exit(71)
    if program == 0:
        _child_main(_start_program, job, fds, mode, harness, workdir, channel)
    if tester_end:
        os.close(channel[0])
        os.close(channel[1])
        _child_main(_start_tester, job, fds, mode, harness, workdir, tester_end, program)
    _close_all_but({status_fd})
    while True:
        pid, wait_status = os.waitpid(-1, 0)
        if pid == program:
            _write_status(status_fd, exit=os.waitstatus_to_exitcode(wait_status))
            os._exit(0)                                 # the kernel kills the rest of the run


def _mount_private_dirs(job, mode) -> None:
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    owner = "" if mode["user_ns"] else f",uid={job['uid']},gid={job['uid']}"
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={job['tmp_mb']}m,nr_inodes=4096,mode=0700{owner}")
    for path in _WRITABLE_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("/tmp", path, None, _MS_BIND)
    for closed, inside in mode["covers"]:
        handles = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in inside]
        _mount("tmpfs", closed, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,mode=0755")
        for path, fd in zip(inside, handles):
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
            _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
            os.close(fd)
        _mount(None, closed, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _start_program(job, fds, mode, harness, workdir, channel) -> None:
    """The program's process: fds, directory, environment, limits, uid; then the harness.

    With a tester (``channel``: request read end, reply write end) it never holds the result
    channel: fd 3 is the request pipe and fd 4 the reply pipe."""
    stdin_fd, out_fd, err_fd, res_fd, payload_fd, status_fd = fds[:6]
    try:
        payload = os.pread(payload_fd, os.fstat(payload_fd).st_size, 0)
        targets = [(stdin_fd, 0), (out_fd, 1), (err_fd, 2)]
        targets += [(channel[0], 3), (channel[1], 4)] if channel else [(res_fd, 3)]
        _dup_onto(targets)
        _enter_limits(job, mode, workdir, job["uid"])
    except BaseException as exc:  # noqa: BLE001
        _write_status(status_fd, error=f"could not start the program: {exc!r}")
        os._exit(71)
    os.closerange(5 if channel else 4, 1 << 16)         # status, kill, payloads, the server's fds
    os._exit(harness["start"](payload, (3, 4) if channel else None))


def _start_tester(job, fds, mode, harness, workdir, channel, program) -> None:
    """The tester (init, once the program is forked): another fresh uid, the result channel,
    the tests; never the program. Its exit status is the run's."""
    err_fd, res_fd, status_fd, tester_fd = fds[2], fds[3], fds[5], fds[7]
    try:
        payload = os.pread(tester_fd, os.fstat(tester_fd).st_size, 0)
        devnull = os.open(os.devnull, os.O_RDWR)
        _dup_onto([(devnull, 0), (devnull, 1), (err_fd, 2), (res_fd, 3), (channel[0], 4),
                   (channel[1], 5), (status_fd, 6)])
        _enter_limits(job, mode, workdir, job["tester_uid"], dumpable=False)
    except BaseException as exc:  # noqa: BLE001
        _write_status(status_fd, error=f"could not start the tester: {exc!r}")
        os._exit(71)
    os.closerange(7, 1 << 16)
    program_fd = os.pidfd_open(program)
    code = harness["start_tester"](payload, (4, 5))
    os.close(4)                                         # the program sees EOF and exits; reaped,
    os.close(5)                                         # its CPU time counts in the run's
    cpu_limited = False
    if select.select([program_fd], [], [], _PROGRAM_EXIT_S)[0]:
        _, wait_status, usage = os.wait4(program, 0)
        # the program ended by its CPU limit (SIGXCPU at the soft limit, SIGKILL at the hard one
        # if it ignored that) is a timeout whatever the tester saw: with several busy threads
        # on several cores, CPU time runs out before the wall clock does
        sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        cpu_limited = sig == signal.SIGXCPU or (
            sig == signal.SIGKILL and usage.ru_utime + usage.ru_stime >= job["cpu_s"])
    _write_status(6, exit=code, program_cpu_limited=cpu_limited)
    os._exit(code)


def _move_high(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
    os.close(fd)
    return high


def _dup_onto(targets) -> None:
    """dup2 each (fd, target) without one target clobbering a later source."""
    moved = [(fcntl.fcntl(fd, fcntl.F_DUPFD, 64), target) for fd, target in targets]
    for fd, target in moved:
        os.dup2(fd, target)
    for fd, _ in moved:
        os.close(fd)


def _enter_limits(job, mode, workdir, uid, *, dumpable: bool = True) -> None:
    """Directory, environment, rlimits, uid, no_new_privs, seccomp: the last steps as root."""
    home = workdir or "/tmp"
    os.chdir(home)
    os.environ.clear()
    os.environ.update(PATH=_SERVER_ENV["PATH"], HOME=home, TMPDIR=home, LANG="C.UTF-8")
    cpu = max(1, int(job["cpu_s"] + 0.999))
    mem = job["memory_mb"] << 20
    nproc = job["max_processes"]
    if not mode["uid_switch"]:                          # the count is the whole user's
        nproc += _count_own_processes()
    for limit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                         (resource.RLIMIT_AS, (mem, mem)),
                         (resource.RLIMIT_FSIZE, (job["file_mb"] << 20,) * 2),
                         (resource.RLIMIT_NOFILE, (job["open_files"],) * 2),
                         (resource.RLIMIT_CORE, (0, 0)),
                         (resource.RLIMIT_NPROC, (nproc, nproc))):
        resource.setrlimit(limit, value)
    if mode["uid_switch"]:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if not dumpable:                                    # no ptrace or /proc/pid/mem, same uid too
        _libc_call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)
    if mode.get("seccomp"):
        _install_seccomp()


def _count_own_processes() -> int:
    uid, n = os.getuid(), 0
    for name in os.listdir("/proc"):
        try:
            n += name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid
        except OSError:
            pass
    return n


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2], sys.argv[3] == "namespaces")
