"""In-sandbox harness of the code checker: run a program, then its tests, and report on fd 3.

Loaded once by the fork server (``verifiers/sandbox.py``) with a private copy of the builtins:
``prepare()`` runs there, ``start(payload)`` in each run's program process, once limits are set.
Standard library only, imported before any program runs.

Two modes (``payload["mode"]``):

- ``script``: run the program as ``__main__``; the caller judges its stdout. Exit code as Python's.
- ``tests``: run the program as module ``solution``, then the test steps the parent planned
  (``verifiers.code``) in a separate namespace, each case reported as it finishes.

Every record is one line, ``repr((nonce, kind, ...))``, written with functions bound before the
program ran: ``started`` just before the program runs (without it, a failure is the harness's, an
``infra_error``), then ``syntax_error``, ``program_error``, or one ``case`` per case and ``done``.
The parent accepts only records carrying the run's nonce, and a pass only with every case passed, a
final ``done`` record and a normal exit. How a program is kept from faking a pass:

- ``sys.exit()`` / ``os._exit()`` / killing itself / closing fd 3: the ``done`` record never comes.
- Printing a marker: stdout is not the result channel, and records need the nonce.
- Patching builtins: the tests run with their own copy of the builtins; the program's globals that
  shadow a builtin are not copied into the tests' namespace (except the entry point); and a program
  that rebinds a builtin or an attribute of a preloaded stdlib module (``_WATCHED``) fails as
  "tampered".
- Returning an object that equals everything: ``assert x == y`` is checked by ``__wb_eq__``, which
  rejects a value that also equals a fresh ``object()``.

Not covered: the program runs in the same interpreter as the tests, so code written to walk the
harness's frames or memory (``sys._getframe``, ``gc``) can find the record writer and forge a pass
(``test_not_covered_a_program_that_walks_the_harness_frames_can_forge_a_pass`` does). That takes
deliberate work against this file; the reward hacks seen in practice are the ones above.
"""
import builtins
import io
import json
import linecache
import os
import random
import reprlib
import sys
import traceback
import types

# Bound before any program runs: a program that patches these names reaches its own copies only.
_BUILTINS = dict(builtins.__dict__)
_repr, _isinstance, _len, _type, _bool = repr, isinstance, len, type, bool
_exec, _compile, _str_copy, _write = exec, compile, str.__str__, os.write
_MISSING = object()
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 160
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxdict = 12
_WATCHED = ("math", "cmath", "re", "string", "collections", "itertools", "functools", "operator",
            "heapq", "bisect", "random", "statistics", "fractions", "decimal", "copy", "json",
            "datetime", "hashlib")
_SNAPSHOT: dict = {}
_MODULES = sys.modules                  # the import system's dict, even if sys.modules is rebound
_RESULT_FD = 3


def prepare() -> None:
    """In the fork server: import what tests commonly use, and remember it as it is."""
    for name in _WATCHED + ("typing", "dataclasses"):
        __import__(name)
    _SNAPSHOT["builtins"] = (builtins, dict(builtins.__dict__))
    for name in _WATCHED:
        module = sys.modules[name]
        _SNAPSHOT[name] = (module, dict(module.__dict__))


def start(payload: bytes) -> int:
    """In the run's program process: run the job; return the process's exit code."""
    job = json.loads(payload)
    out = _setup_process()
    emit = _emitter(job["nonce"])
    try:
        if job["mode"] == "script":
            return _run_script(job["code"], emit)
        return _run_tests(job, emit)
    finally:
        _flush(out)


def _setup_process():
    sys.argv = ["solution.py"]
    sys.stdin = sys.__stdin__ = io.open(0, "r", encoding="utf-8", closefd=False)
    sys.stdout = sys.__stdout__ = io.open(1, "w", encoding="utf-8", errors="backslashreplace",
                                          closefd=False)
    sys.stderr = sys.__stderr__ = io.open(2, "w", encoding="utf-8", errors="backslashreplace",
                                          buffering=1, closefd=False)
    random.seed()                       # the fork server's state would repeat in every run
    linecache.clearcache()
    return sys.stdout, sys.stderr


def _flush(streams) -> None:
    for stream in (sys.stdout, sys.stderr) + streams:
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - whatever the program left there
            pass


def _emitter(nonce: str):
    def emit(*fields) -> None:
        data = (_repr((nonce,) + fields) + "\n").encode("utf-8", "backslashreplace")
        view = memoryview(data)
        while view:
            view = view[_write(_RESULT_FD, view):]
    return emit


def _plain(text, limit: int = 400):
    """An exact ``str`` (never a subclass with its own methods), cut to ``limit``."""
    if not _isinstance(text, str):
        return None
    text = _str_copy(text)
    return text if _len(text) <= limit else text[:limit] + "..."


def _show(value):
    try:
        return _plain(_SHORT.repr(value))
    except BaseException:  # noqa: BLE001
        return f"<unprintable {_type(value).__name__}>"


def _describe(exc: BaseException) -> str:
    """``'ZeroDivisionError: division by zero (solution.py line 3, in add)'``."""
    try:
        text = "".join(traceback.format_exception_only(_type(exc), exc)).strip()
    except BaseException:  # noqa: BLE001
        text = _type(exc).__name__
    where, tb = "", exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == "solution.py":
            where = f" (solution.py line {tb.tb_lineno}, in {code.co_name})"
        tb = tb.tb_next
    return _plain(text + where)


def _compile_source(code: str, filename: str, emit):
    linecache.cache[filename] = (_len(code), None, code.splitlines(True), filename)
    try:
        return _compile(code, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        message = "".join(traceback.format_exception_only(_type(exc), exc))
        sys.stderr.write(message)
        emit("syntax_error", _plain(message.strip()))
        return None


def _program_module(name: str, its_builtins, emit) -> types.ModuleType:
    """The module the program runs as, registered so pickle and multiprocessing find it."""
    module = types.ModuleType(name)
    module.__file__ = "solution.py"
    module.__builtins__ = its_builtins
    sys.modules[name] = module
    emit("started")                                     # from here on, failures are the program's
    return module


def _run_script(code: str, emit) -> int:
    program = _compile_source(code, "solution.py", emit)
    if program is None:
        return 1
    main = _program_module("__main__", builtins, emit)
    try:
        _exec(program, main.__dict__)
        return 0
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException as exc:  # noqa: BLE001 - the program's own error: report like python does
        traceback.print_exception(_type(exc), exc, exc.__traceback__.tb_next)
        emit("program_error", _type(exc).__name__, _describe(exc))
        return 1


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if _isinstance(exc.code, int):
        return exc.code & 0xFF
    try:
        print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        pass
    return 1


class _Eq:
    """``__wb_eq__(left, right, actual_is_left)``: ``left == right``, remembered for the report."""

    def __init__(self):
        self.failed = None                              # (expected, actual) of the last False
        self.fooled = False

    def __call__(self, left, right, actual_is_left=True):
        equal = _bool(left == right)
        if equal:
            probe = object()                            # nothing honest equals a fresh object
            try:
                self.fooled = _bool(left == probe) or _bool(right == probe)
            except Exception:  # noqa: BLE001 - an __eq__ that rejects strangers is honest
                self.fooled = False
            equal = not self.fooled
        if not equal:
            actual, expected = (left, right) if actual_is_left else (right, left)
            self.failed = (_show(expected), _show(actual))
        return equal


def _run_tests(job: dict, emit) -> int:
    steps = []
    for kind, source in job["steps"]:
        code = _compile_source(source, "tests.py", lambda *f: None)
        if code is None:
            emit("test_error", _plain(source))
            return 0
        steps.append((kind, code))
    program = _compile_source(job["code"], "solution.py", emit)
    if program is None:
        return 0
    module = _program_module("solution", dict(_BUILTINS), emit)
    try:
        _exec(program, module.__dict__)
    except BaseException as exc:  # noqa: BLE001 - includes SystemExit: the tests never ran
        traceback.print_exception(_type(exc), exc, exc.__traceback__.tb_next)
        emit("program_error", _type(exc).__name__, _describe(exc))
        return 0
    entry = job.get("entry_point")
    names = {k: v for k, v in module.__dict__.items() if k not in _BUILTINS or k == entry}
    eq = _Eq()
    names.update(__builtins__=dict(_BUILTINS), __name__="tests", __wb_eq__=eq)
    index, setup_error = 0, None
    for kind, code in steps:
        if kind == "setup":
            if setup_error is None:
                try:
                    _exec(code, names)
                except BaseException as exc:  # noqa: BLE001
                    setup_error = _describe(exc)
            continue
        eq.failed, eq.fooled = None, False
        why, error = None, setup_error
        if setup_error is not None:
            why = "setup_error"
        else:
            try:
                _exec(code, names)
            except AssertionError:
                why = "assertion"
            except BaseException as exc:  # noqa: BLE001 - a crash in this case only
                why, error = _type(exc).__name__, _describe(exc)
            if eq.fooled:
                why = "equals_everything"
        expected, actual = eq.failed if (why and eq.failed) else (None, None)
        emit("case", index, why is None, why, expected, actual, error)
        index += 1
    emit("done", _tampered())
    return 0


def _tampered():
    """The first preloaded name the program rebound (``'builtins.abs'``), or None."""
    for name, (module, snapshot) in _SNAPSHOT.items():
        if _MODULES.get(name) is not module:
            return f"sys.modules[{name!r}]"
        current = module.__dict__
        for key, value in snapshot.items():
            if current.get(key, _MISSING) is not value:
                return f"{name}.{key}"
    return None
