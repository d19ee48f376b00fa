"""One test per guarantee in verifiers/sandbox.py's docstring, and the hostile-program corpus.

Every test also checks that the run left nothing behind: no process of a sandbox uid, no child of
the fork server, no stray files, and the test process's canary file, sentinel child and listening
sockets untouched. These tests need Linux and root, as on CI.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from verifiers import check_code, execution_feedback, sandbox
from verifiers.sandbox import Limits

pytestmark = pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                                reason="the sandbox's guarantees are stated for root on Linux")

FAST = Limits(timeout_s=1.0, memory_mb=256, max_processes=16, file_mb=8, tmp_mb=16,
              output_bytes=64 << 10)
SANDBOX_UID_MIN = 1_500_000_000
HOSTILE_DIR = Path(__file__).parent / "hostile"
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


# ---------------------------------------------------------------------------------------------
# What "left nothing behind" means


def _proc_status(pid: str) -> dict:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _leftover_processes() -> list[str]:
    server = sandbox._SERVER.process.pid if sandbox._SERVER else None
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        status = _proc_status(pid)
        if not status:
            continue
        uid = int(status["Uid"].split()[0])
        ppid = int(status["PPid"])
        zombie_of_ours = status["State"].startswith("Z") and ppid == os.getpid()
        spare = status["Name"].strip() == sandbox.SPARE_NAME.decode() and uid == 0
        if uid >= SANDBOX_UID_MIN or (ppid == server and not spare) or zombie_of_ours:
            found.append(f"{pid} {status['Name'].strip()} uid={uid} ppid={ppid}")
    return found


def _leftover_files() -> list[str]:
    places = [*SHARED_DIRS, "/", "/etc", str(Path.cwd()), str(HOSTILE_DIR.parent)]
    found = []
    for place in places:
        try:
            entries = list(os.scandir(place))
        except OSError:
            continue
        for entry in entries:
            try:
                owner = entry.stat(follow_symlinks=False).st_uid
            except OSError:
                continue
            if "wb-hostile" in entry.name or owner >= SANDBOX_UID_MIN:
                found.append(entry.path)
    return found


def assert_nothing_left(timeout_s: float = 5.0) -> None:
    """No process of a run (after a moment to exit) and no file of one."""
    deadline = time.monotonic() + timeout_s
    while (left := _leftover_processes()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"processes left behind: {left}"
    server = sandbox._SERVER.process.pid if sandbox._SERVER else None
    spares = [pid for pid in filter(str.isdigit, os.listdir("/proc"))
              if _proc_status(pid).get("PPid") == str(server)]
    assert len(spares) <= sandbox._SPARES, spares       # idle inits, one per worker at most
    assert not _leftover_files(), f"files left behind: {_leftover_files()}"


class Host:
    """What a hostile program might harm in the test process, and the checks that it did not."""

    def __init__(self, root: Path):
        self.secret_name = "WB_HOSTILE_SECRET"
        self.secret = secrets.token_hex(16)
        os.environ[self.secret_name] = self.secret
        self.canary = root / "canary.txt"
        self.canary.write_text("the test process's file\n")
        self.closed = root / "closed"
        self.closed.mkdir(mode=0o700)
        (self.closed / "secret.txt").write_text(self.secret)
        self.sentinel = subprocess.Popen(["sleep", "600"])
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.tcp.setblocking(False)
        self.port = self.tcp.getsockname()[1]
        self.abstract = f"wb-hostile-{os.getpid()}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.abstract)
        self.unix.listen()
        self.unix.setblocking(False)

    def fill(self, source: str) -> str:
        return (source.replace("__CANARY__", str(self.canary))
                .replace("__PORT__", str(self.port)).replace("__ABSTRACT__", self.abstract))

    def assert_unharmed(self, *texts: str) -> None:
        for text in texts:
            assert self.secret not in text, "the parent's secret reached the program"
        assert self.canary.read_text() == "the test process's file\n"
        assert os.environ[self.secret_name] == self.secret
        assert self.sentinel.poll() is None, "a process of the test was killed"
        for listener in (self.tcp, self.unix):
            with pytest.raises(BlockingIOError):
                listener.accept()
        assert_nothing_left()

    def close(self) -> None:
        self.sentinel.kill()
        self.sentinel.wait()
        self.tcp.close()
        self.unix.close()
        del os.environ[self.secret_name]


@pytest.fixture(scope="module")
def host():
    root = HOSTILE_DIR.parent / f".sandbox-canary-{os.getpid()}"
    root.mkdir()
    host = Host(root)
    try:
        yield host
    finally:
        host.close()
        for path in sorted(root.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        root.rmdir()


FORK_UNTIL_REFUSED = """
    import os, time
    n = 0
    try:
        while n < 100:
            if os.fork() == 0:
                time.sleep(60)
            n += 1
    except OSError:
        pass
    print(n)
"""


def run(code: str, limits: Limits = FAST, **kw):
    return sandbox.run_python(textwrap.dedent(code), limits=limits, **kw)


# ---------------------------------------------------------------------------------------------
# One test per guarantee


def test_isolation_as_root_has_namespaces_and_uid_switch():
    info = sandbox.isolation()
    assert info["namespaces"] and info["uid_switch"] and info["seccomp"], info


def _key_users() -> set[str]:
    return {line.split(":")[0].strip() for line in Path("/proc/key-users").read_text().splitlines()}


def test_seccomp_refuses_memfd_namespaces_mounts_and_keyrings(host):
    before = _key_users()
    result = run("""
        import ctypes, os, threading
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            os.memfd_create("x")
        except PermissionError:
            print("memfd refused")
        for flags in (0x10000000, 0x00020000, 0x40000000):       # user, mount, net namespace
            print(libc.unshare(flags), ctypes.get_errno())
        print(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0))     # clone(CLONE_NEWUSER)
        print(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
        print(libc.syscall(250, 0, -4, 1), libc.syscall(248, b"user", b"k", b"v", 1, -4))
        thread = threading.Thread(target=print, args=("threads work",), kwargs={"flush": True})
        thread.start()
        thread.join()
        print("fork works" if os.fork() else "", end="")
    """)
    lines = result.stdout.decode().splitlines()
    assert lines[:4] == ["memfd refused", "-1 1", "-1 1", "-1 1"], lines
    assert lines[4:7] == ["-1", "-1", "-1 -1"], lines
    assert "threads work" in lines and "fork works" in lines, lines
    assert _key_users() == before                       # no keyring outlives the run
    host.assert_unharmed()


def _run_cgroups() -> list[str]:
    base = sandbox.isolation().get("memory_cgroup")
    if not base or not os.path.isdir(base):
        return []
    return [name for name in os.listdir(base) if name.startswith("run-")]


def test_memory_is_bounded_for_the_run_as_a_whole(host):
    if not sandbox.isolation()["memory_cgroup"]:
        pytest.skip(f"no memory cgroup here: {sandbox.isolation()['memory']}")
    limits = replace(FAST, memory_mb=128, tmp_mb=16, file_mb=16, timeout_s=10)
    children = run("""
        import os, time
        pids = []
        for _ in range(4):                       # 4 x 80 MB: each within its own rlimit
            pid = os.fork()
            if pid == 0:
                hoard = bytearray(80 << 20)
                for i in range(0, len(hoard), 4096):
                    hoard[i] = 1
                time.sleep(5)
                os._exit(0)
            pids.append(pid)
        print([os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids])
    """, limits)
    assert children.memory_exceeded and b"-9" in children.stdout, children
    files = run("""
        hoard = bytearray(60 << 20)              # 60 MB of memory and 14 MB of /tmp: fits
        for i in range(0, len(hoard), 4096):
            hoard[i] = 1
        with open('/tmp/f', 'wb') as f:
            for _ in range(14):
                f.write(b'x' * (1 << 20))
        print('fits')
        print(next(line for line in open('/proc/self/cgroup') if ':memory:' in line))
    """, limits)
    lines = files.stdout.decode().splitlines()
    assert lines[0] == "fits" and not files.memory_exceeded, files
    own = os.path.basename(lines[1].strip())
    assert own.startswith("run-") and own not in _run_cgroups()   # removed with the run
    host.assert_unharmed()


def test_the_tester_is_out_of_the_programs_reach(host):
    verdict = check_code((HOSTILE_DIR / "read_the_tests.py").read_text(),
                         tests="assert add(1, 2) == 3", limits=FAST)
    assert verdict.status == "failed" and "nothing" in verdict.stdout, verdict
    host.assert_unharmed()


def test_wall_clock_kills_every_process_of_the_run(host):
    result = run("""
        import os, time
        if os.fork() == 0:           # a daemon in its own session, outside the process group
            os.setsid()
            time.sleep(600)
        time.sleep(600)
    """)
    assert result.timed_out and 0.9 < result.wall_s < 2.0
    host.assert_unharmed()


def test_cpu_time_is_limited_per_process(host):
    result = run("while True: pass", replace(FAST, timeout_s=10, cpu_s=1))
    assert result.timed_out and result.signal == signal.SIGXCPU
    assert result.wall_s < 10                            # SIGXCPU, not the clock (slow when loaded)
    host.assert_unharmed()


def test_address_space_is_limited(host):
    small = run("x = bytearray(50 << 20); print('ok')", replace(FAST, memory_mb=128))
    big = run("x = bytearray(300 << 20)", replace(FAST, memory_mb=128))
    assert small.stdout == b"ok\n"
    assert big.exit_code == 1 and b"MemoryError" in big.stderr
    host.assert_unharmed()


def test_processes_are_limited_even_though_the_parent_is_root(host):
    assert os.geteuid() == 0
    result = run(FORK_UNTIL_REFUSED, replace(FAST, max_processes=8))
    assert 0 < int(result.stdout) < 8                    # the first process counts too
    host.assert_unharmed()


def test_file_size_is_limited(host):
    result = run("open('big', 'wb').write(b'x' * (2 << 20))", replace(FAST, file_mb=1))
    assert b"File too large" in result.stderr
    host.assert_unharmed()


def test_tmp_is_private_fresh_bounded_and_gone_afterwards(host):
    first = run("""
        import os
        print(os.getcwd(), os.listdir('.'))
        for d in ['/tmp', '/var/tmp', '/dev/shm', '/run/lock']:
            open(d + '/wb-hostile-mark', 'w').write('x')
        print(sorted(os.listdir('/tmp')))
    """)
    assert first.stdout.decode().splitlines() == ["/tmp []", "['wb-hostile-mark']"]
    second = run("import os; print(os.listdir('/tmp'))")
    assert second.stdout == b"[]\n"                     # one shared, fresh, empty directory
    full = run("""
        n = 0
        try:
            while True:
                open(f'f{n}', 'wb').write(b'x' * (1 << 20)); n += 1
        except OSError as e:
            print(n, e.strerror)
    """, replace(FAST, tmp_mb=4))
    files, error = full.stdout.decode().split(" ", 1)
    assert int(files) <= 4 and error == "No space left on device\n"
    host.assert_unharmed()


def test_environment_is_scrubbed_and_parent_invisible(host):
    result = run("""
        import os
        print(sorted(os.environ))
        print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), os.getpid(), os.getppid())
        for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self']:
            try:
                print(open(f'/proc/{pid}/environ', 'rb').read())
            except OSError:
                pass
    """)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "['HOME', 'LANG', 'PATH', 'TMPDIR']"
    assert lines[1] == "[1, 2] 2 1"                     # init and the program, nobody else
    host.assert_unharmed(result.stdout.decode())


def test_python_is_isolated_without_site(host, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/nonexistent-wb")
    result = run("""
        import sys
        print(sys.flags.isolated, sys.flags.no_site, sys.flags.ignore_environment)
        print([p for p in sys.path if p in ('', '.') or 'site-packages' in p or 'wb' in p])
        import importlib.util
        print(importlib.util.find_spec('pytest'))
    """)
    assert result.stdout.decode().splitlines() == ["1 1 1", "[]", "None"]
    host.assert_unharmed()


def test_output_is_capped_and_the_run_killed(host):
    result = run("while True: print('x' * 1000)", replace(FAST, timeout_s=10))
    assert result.output_exceeded and len(result.stdout) == FAST.output_bytes
    assert result.wall_s < 5
    host.assert_unharmed()


def test_no_network_not_even_localhost(host):
    result = run(f"""
        import socket
        print([name for _, name in socket.if_nameindex()])
        for addr in [('127.0.0.1', {host.port}), ('8.8.8.8', 53)]:
            try:
                socket.create_connection(addr, timeout=1)
                print('CONNECTED')
            except OSError as e:
                print(e.errno)
    """)
    import errno

    assert result.stdout.decode().split() == ["['lo']", str(errno.ENETUNREACH),
                                              str(errno.ENETUNREACH)]
    host.assert_unharmed()


def test_cannot_signal_anything_outside_the_run(host):
    result = run(f"""
        import os
        for target in [{os.getpid()}, {host.sentinel.pid}, os.getppid(), 1, -1]:
            try:
                os.kill(target, 9)
                print('sent')
            except OSError as e:
                print(e.strerror)
    """)
    outcomes = result.stdout.decode().splitlines()
    assert outcomes[:2] == ["No such process"] * 2      # the test's pids do not exist in there
    host.assert_unharmed()


def test_unprivileged_uid_with_no_new_privs(host):
    result = run("""
        import os
        status = dict(l.split(':', 1) for l in open('/proc/self/status'))
        print(os.getuid(), status['NoNewPrivs'].strip(), os.getgroups())
    """)
    uid, no_new_privs, groups = result.stdout.decode().split(maxsplit=2)
    assert int(uid) >= SANDBOX_UID_MIN and no_new_privs == "1" and groups.strip() == "[]"
    host.assert_unharmed()


# A checkout under /tmp (or the like) is invisible in there: the run gets a private /tmp.
_REPO_HIDDEN = str(HOSTILE_DIR.resolve()).startswith(("/tmp/", "/var/tmp/", "/dev/shm/"))


def test_closed_directories_stay_closed_and_python_is_read_only(host):
    result = run(f"""
        import os, sys
        for path in ['{host.closed}/secret.txt', '/root/.bashrc']:
            try:
                print(open(path).read())
            except OSError as e:
                print(e.strerror)
        try:
            open(os.path.join(sys.base_prefix, 'wb-hostile'), 'w')
        except OSError as e:
            print(e.strerror)
    """)
    lines = result.stdout.decode().splitlines()
    assert lines[0] in (("Permission denied", "No such file or directory") if _REPO_HIDDEN
                        else ("Permission denied",))
    assert lines[1] in ("Permission denied", "No such file or directory")
    assert lines[2] in ("Permission denied", "Read-only file system")
    host.assert_unharmed(result.stdout.decode())


def _in_subreaper(script: str) -> str:
    """Run script in a child that adopts and reaps every orphan, so that killing a process in it
    leaves no zombie for this machine's PID 1 (which does not reap). Returns its stdout."""
    prologue = "import ctypes\nctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n"   # CHILD_SUBREAPER
    epilogue = "\nimport os\nwhile True:\n    try:\n        os.wait()\n" \
               "    except ChildProcessError:\n        break\n"
    out = subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(script) + epilogue],
                         capture_output=True, text=True, timeout=60, cwd=HOSTILE_DIR.parent.parent)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_runs_die_with_their_parent(host):
    """The parent is SIGKILLed mid-run: the run's kill pipe closes and the run ends at once."""
    child = "from verifiers import sandbox\n" \
            "sandbox.run_python('import time; time.sleep(600)', " \
            "limits=sandbox.Limits(timeout_s=600))\n"
    out = _in_subreaper(f"""
        import os, subprocess, sys, time
        def sandboxed():
            for pid in filter(str.isdigit, os.listdir('/proc')):
                try:
                    status = open(f'/proc/{{pid}}/status').read()
                except OSError:
                    continue
                if int(status.split('Uid:')[1].split()[0]) >= {SANDBOX_UID_MIN}:
                    return True
        parent = subprocess.Popen([sys.executable, '-c', {child!r}])
        start = time.monotonic()
        while not sandboxed() and time.monotonic() - start < 10:
            time.sleep(0.01)                             # until the run is under way
        parent.kill()
        parent.wait()
        start = time.monotonic()
        while sandboxed() and time.monotonic() - start < 10:
            time.sleep(0.01)
        print(time.monotonic() - start)
    """)
    assert float(out) < 2
    host.assert_unharmed()


def test_a_dead_fork_server_is_an_infra_error_and_takes_its_runs_along(host):
    out = _in_subreaper("""
        import os, signal, threading
        from verifiers import sandbox
        sandbox.run_python("pass")
        server = sandbox._SERVER.process.pid
        threading.Timer(0.5, os.kill, (server, signal.SIGKILL)).start()
        result = sandbox.run_python("import time; time.sleep(5)",
                                    limits=sandbox.Limits(timeout_s=5))
        print(bool(result.infra_error), result.timed_out, result.wall_s < 3)
    """)
    assert out.split() == ["True", "False", "True"]
    host.assert_unharmed()


def test_a_dead_fork_server_is_replaced(host):
    sandbox.run_python("pass")
    sandbox._SERVER.process.kill()
    sandbox._SERVER.process.wait()
    assert run("print(1)").stdout == b"1\n"
    host.assert_unharmed()


# ---------------------------------------------------------------------------------------------
# The fallback when the kernel refuses namespaces (e.g. a container without CAP_SYS_ADMIN):
# rlimits, the uid switch, a process-group kill plus a kill of everything the run's uid owns,
# and a temporary working directory. The network is open there.


@pytest.fixture
def no_namespaces(monkeypatch):
    sandbox.shutdown()
    monkeypatch.setattr(sandbox, "_NAMESPACES", False)
    yield
    sandbox.shutdown()


def test_fallback_says_what_it_is(no_namespaces):
    info = sandbox.isolation()
    assert not info["namespaces"] and info["uid_switch"], info


def test_fallback_still_checks_code_and_kills_escaped_processes(no_namespaces, host):
    assert check_code("def add(a, b):\n    return a + b\n", tests="assert add(1, 2) == 3").passed
    result = run("""
        import os, time
        print(os.getcwd(), flush=True)
        open('wb-hostile-file', 'w').write('x')
        if os.fork() == 0:
            os.setsid()
            time.sleep(600)
        time.sleep(600)
    """)
    workdir = result.stdout.decode().strip()
    assert result.timed_out and workdir.startswith(tempfile.gettempdir())
    assert not os.path.exists(workdir)                 # removed with everything in it
    host.assert_unharmed()


def test_fallback_limits_processes_as_root(no_namespaces, host):
    result = run(FORK_UNTIL_REFUSED, replace(FAST, max_processes=8))
    assert 0 < int(result.stdout) < 8
    host.assert_unharmed()


def test_fallback_leaves_the_network_open(no_namespaces, host):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result = run(f"import socket; socket.socket().connect(('127.0.0.1', {port})); print('in')")
    assert result.stdout == b"in\n"
    host.assert_unharmed()


# ---------------------------------------------------------------------------------------------
# What the docstring says is not covered, shown


def test_not_covered_world_readable_files_stay_readable(host):
    mine = "/etc/hostname" if _REPO_HIDDEN else __file__
    result = run(f"print(len(open({mine!r}).read()) > 0, open('/etc/passwd').read()[:4])")
    assert result.stdout == b"True root\n"
    host.assert_unharmed()


# ---------------------------------------------------------------------------------------------
# The hostile-program corpus: every program contained, the test process unharmed


def _header(source: str) -> dict[str, list[str]]:
    header: dict[str, list[str]] = {}
    for line in source.splitlines():
        match = re.match(r"# (expect|tests|stdout-has|stdout-lacks): (.*)", line)
        if match:
            header.setdefault(match[1], []).append(match[2])
    return header


HOSTILE = sorted(HOSTILE_DIR.glob("*.py"))
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def test_the_corpus_is_big_enough():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.stem)
def test_hostile_program_is_contained(path, host):
    source = path.read_text()
    header = _header(source)
    tests = header.get("tests", ["assert add(1, 2) == 3"])[0].replace("\\n", "\n")
    verdict = check_code(host.fill(source), tests=tests, limits=FAST)
    expected = header["expect"][0].split(",")
    assert verdict.status in expected, verdict
    for text in header.get("stdout-has", []):
        assert text in verdict.stdout, verdict
    for text in header.get("stdout-lacks", []):
        assert text not in verdict.stdout, verdict
    shown = verdict.stdout + verdict.stderr + verdict.reason + execution_feedback(verdict)
    assert not CONTROL.search(shown), repr(CONTROL.search(shown))    # escaped, never raw
    counted = re.search(r"refused after (\d+)", verdict.stdout)
    if counted:
        assert int(counted[1]) < FAST.max_processes
    host.assert_unharmed(verdict.stdout, verdict.stderr, verdict.reason)


@pytest.mark.parametrize("threads", [0, 4])
def test_a_program_ended_by_its_cpu_limit_is_a_timeout_before_the_wall_clock(threads):
    """CPU limit below the wall clock: the program's process dies of it (SIGXCPU) while the
    tester is still waiting; that is a timeout, not a crash (found flaky on a quiet CI machine,
    where 5 busy threads on 2 cores spend 1 s of CPU in 0.5 s of wall clock)."""
    import dataclasses

    source = textwrap.dedent(f"""
        import threading

        def spin():
            while True:
                pass

        for _ in range({threads}):
            threading.Thread(target=spin, daemon=True).start()

        def add(a, b):
            return a + b

        spin()
        """)
    limits = dataclasses.replace(FAST, timeout_s=6.0, cpu_s=1.0)
    verdict = check_code(source, tests="assert add(1, 2) == 3", limits=limits)
    assert verdict.status == "timeout", verdict
    assert verdict.wall_s < 5.0, verdict           # the CPU limit ended it, not the wall clock
