"""In-sandbox harness of the code checker: run a program, and (for tests) judge it from outside.

Loaded once by the fork server (``verifiers/sandbox.py``) with a private copy of the builtins:
``prepare()`` runs there; ``start(payload)`` in a run's *program* process, ``start_tester(...)`` in
its *tester* process, once limits are set. Standard library only, imported before any program runs.

Two modes (``payload["mode"]``):

- ``script``: the program process runs the program as ``__main__``; the caller judges its stdout
  (the expected output never enters the sandbox). Exit code as Python's.
- ``tests``: two processes of two uids. The *program* process runs the program as module
  ``solution`` and then only answers calls: ``(handle, operation, plain-data arguments)`` in,
  a plain-data result (or an exception's type name and message) out. The *tester* process runs the
  test code, where every name the program defines is a stand-in (``_Remote``) that forwards calls,
  and evaluates every assertion on the plain data that came back. The test source, the expected
  values and the result channel to the parent exist only in the tester: the program cannot read
  them, hook them (profilers, ``atexit``, ``__del__``, threads run in *its* process only), or write
  a record (it has no descriptor of that channel and cannot signal or trace another uid).
  Calls the next steps will surely make first, with literal arguments, are sent ahead in order,
  so the program answers them back to back (``_Link``): it sees the calls sequential tests make,
  in the same order.

Plain data (``encode``/``decode``): ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``bytes``, and ``list``/``tuple``/``dict``/``set``/``frozenset`` of plain data, exact types only
(a subclass of ``int`` with its own ``__eq__`` is not plain data), checked recursively on both
sides, no cycles, at most ``_MAX_NODES`` values and ``_MAX_FRAME`` bytes a message. Any other
result stays in the program process; the tester gets a handle that compares equal only to itself
(or, against another handle, by the program's own ``__eq__``: both values are then the
program's), and whose methods, items, length, truth, iteration and ``str`` are forwarded. NaN is
a real float in the tester: it equals nothing, as in Python.

What a verdict still trusts the program for, or cannot do (``tests/test_code_checker.py`` shows
each):

- Names the tests use but do not define come from the program: a test that relies on a helper the
  prompt defined (HumanEval/38 calls ``encode_cyclic`` to build its input) uses the program's copy,
  which the program may have rewritten. Define such helpers in the tests to close that.
- Arguments are copied: a test that checks that a function changed its argument in place fails.
  The tests cannot pass their own functions or objects to the program (``TypeError``: that case
  fails), nor read the program's module-level data except through its functions.
- Two values of the program compared with each other use the program's ``__eq__``.
- Anything a test asks of a handle (``str``, ``len``, truth, iteration) is the program's answer;
  it is only ever compared as plain data.

Records to the parent (tester only, fd 3): one JSON line each, ``[nonce, seq, kind, ...]`` with
``seq`` counting from 0: ``started``; then ``syntax_error`` / ``program_error`` (the program did not
load), or one ``case`` per case and ``done``; ``test_error`` if the tests do not compile. The parent
accepts only a complete, well-formed sequence (``verifiers.code._records``).
"""
import ast
import builtins
import io
import json
import linecache
import math
import os
import random
import reprlib
import sys
import traceback
import types

_BUILTINS = dict(builtins.__dict__)
_repr, _isinstance, _len, _type, _write, _read = repr, isinstance, len, type, os.write, os.read
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 160
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxdict = 12
_PRELOAD = ("math", "cmath", "re", "string", "collections", "itertools", "functools", "operator",
            "heapq", "bisect", "random", "statistics", "fractions", "decimal", "copy", "json",
            "datetime", "hashlib", "typing", "dataclasses")
_RESULT_FD = 3
_MAX_FRAME = 16 << 20                   # bytes of one message between tester and program
_MAX_NODES = 1 << 20                    # values in one message
_MAX_DEPTH = 200                        # nesting of one message
_ATOMS = (type(None), bool, int, float, str)
_BIG = 1 << 62                          # larger ints travel as hex text
_MISSING = object()
_PIPE_ROOM = 32 << 10                   # requests sent ahead: well inside a pipe's 64 KiB
_TAGS = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def prepare() -> None:
    """In the fork server: import what programs and tests commonly use (shared by every run)."""
    for name in _PRELOAD:
        __import__(name)


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
    seq = [0]

    def emit(*fields) -> None:
        data = (json.dumps([nonce, seq[0], *fields]) + "\n").encode()
        seq[0] += 1
        view = memoryview(data)
        while view:
            view = view[_write(_RESULT_FD, view):]
    return emit


def _plain_text(text, limit: int = 400):
    """An exact ``str``, cut to ``limit``."""
    if _type(text) is not str:
        return None
    return text if _len(text) <= limit else text[:limit] + "..."


def _show(value):
    try:
        return _plain_text(_SHORT.repr(value))
    except BaseException:  # noqa: BLE001
        return f"<unprintable {_type(value).__name__}>"


def _describe(exc: BaseException) -> str:
    """``'ZeroDivisionError: division by zero (solution.py line 3, in add)'``."""
    try:
        text = str(exc) if _type(exc) is ProgramError else \
            "".join(traceback.format_exception_only(_type(exc), exc)).strip()
    except BaseException:  # noqa: BLE001
        text = _type(exc).__name__
    where, tb = "", exc.__traceback__
    try:
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename == "solution.py":
                where = f" (solution.py line {tb.tb_lineno}, in {code.co_name})"
            tb = tb.tb_next
    except BaseException:  # noqa: BLE001
        pass
    return _plain_text(str(text) + where) or "an exception"


def _compile_source(code: str, filename: str, *, tree: bool = False):
    """(code object, None) or (None, the error message); with ``tree``, ((code, its AST), None)."""
    linecache.cache[filename] = (_len(code), None, code.splitlines(True), filename)
    try:
        if not tree:
            return compile(code, filename, "exec", dont_inherit=True), None
        parsed = ast.parse(code, filename)
        return (compile(parsed, filename, "exec", dont_inherit=True), parsed), None
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return None, "".join(traceback.format_exception_only(_type(exc), exc))


# ----------------------------------------------------------------------------------------------
# Plain data across the boundary


class NotPlain(Exception):
    """A value that is not plain data (or is too big to send)."""


def encode(value):
    """Plain data -> JSON-able, tagged; raises NotPlain for anything else."""
    budget = [_MAX_NODES]
    active = set()

    def walk(v, depth):
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            raise NotPlain("too big or too deep")
        t = _type(v)
        if t is float:
            return v if math.isfinite(v) else ["float", float.hex(v)]
        if t is int and not -_BIG <= v <= _BIG:          # hex: exact, and no digit limit
            return ["int", format(v, "x")]
        if t in _ATOMS:
            return v
        if t is complex:
            return ["complex", float.hex(v.real), float.hex(v.imag)]
        if t is bytes:
            return ["bytes", v.hex()]
        if t is list or t is tuple or t is set or t is frozenset or t is dict:
            if id(v) in active:
                raise NotPlain("a structure that contains itself")
            active.add(id(v))
            items = (list(v.items()) if t is dict else list(v))
            out = [t.__name__] + ([[walk(k, depth + 1), walk(x, depth + 1)] for k, x in items]
                                  if t is dict else [walk(x, depth + 1) for x in items])
            active.discard(id(v))
            return out
        raise NotPlain(t.__name__)
    return walk(value, 0)


def decode(data):
    """The inverse of encode, on anything ``json.loads`` gave; raises ValueError when malformed.

    Builds only builtin values; a big int as text is decimal or hex within Python's limits.
    """
    budget = [_MAX_NODES]

    def walk(d, depth):
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            raise ValueError("too big or too deep")
        t = _type(d)
        if t in _ATOMS:
            return d
        if t is not list or not d or _type(d[0]) is not str:
            raise ValueError(f"not plain data: {t.__name__}")
        tag, rest = d[0], d[1:]
        if tag == "int" and _len(rest) == 1 and _type(rest[0]) is str:
            return int(rest[0], 16)
        if tag == "float" and _len(rest) == 1 and _type(rest[0]) is str:
            return float.fromhex(rest[0])
        if tag == "complex" and _len(rest) == 2 and all(_type(x) is str for x in rest):
            return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
        if tag == "bytes" and _len(rest) == 1 and _type(rest[0]) is str:
            return bytes.fromhex(rest[0])
        if tag == "dict":
            out = {}
            for pair in rest:
                if _type(pair) is not list or _len(pair) != 2:
                    raise ValueError("a dict item is not a pair")
                out[walk(pair[0], depth + 1)] = walk(pair[1], depth + 1)
            return out
        if tag in _TAGS:
            return _TAGS[tag](walk(x, depth + 1) for x in rest)
        raise ValueError(f"unknown tag {tag[:20]!r}")
    try:
        return walk(data, 0)
    except (TypeError, OverflowError, RecursionError, MemoryError) as exc:   # unhashable key...
        raise ValueError(f"malformed: {_type(exc).__name__}") from None


class _Channel:
    """Length-prefixed JSON messages over a pair of pipes."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def send(self, message) -> None:
        data = json.dumps(message, allow_nan=False).encode("utf-8", "surrogatepass")
        if _len(data) > _MAX_FRAME:
            raise NotPlain(f"a message of {_len(data)} bytes (limit {_MAX_FRAME})")
        view = memoryview(_len(data).to_bytes(4, "big") + data)
        while view:
            view = view[_write(self.write_fd, view):]

    def receive(self):
        """The next message, or None at end of file; ValueError when malformed."""
        head = self._exactly(4)
        if head is None:
            return None
        size = int.from_bytes(head, "big")
        if size > _MAX_FRAME:
            raise ValueError(f"a message of {size} bytes (limit {_MAX_FRAME})")
        body = self._exactly(size)
        if body is None:
            raise ValueError("the message was cut off")
        try:
            return json.loads(body.decode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError, MemoryError) as exc:
            raise ValueError(f"not JSON ({_type(exc).__name__})") from None

    def _exactly(self, n: int):
        parts, got = [], 0
        while got < n:
            part = _read(self.read_fd, min(n - got, 1 << 20))
            if not part:
                if got:
                    raise ValueError("the message was cut off")
                return None
            parts.append(part)
            got += _len(part)
        return b"".join(parts)


# ----------------------------------------------------------------------------------------------
# The program process


def start(payload: bytes, channel_fds=None) -> int:
    """In the run's program process: run the job; return the process's exit code."""
    job = json.loads(payload)
    del payload
    out = _setup_process()
    try:
        if job["mode"] == "script":
            return _run_script(job["code"], _emitter(job["nonce"]))
        return _serve_calls(job["code"], _Channel(*channel_fds))
    finally:
        _flush(out)


def _program_module(name: str) -> types.ModuleType:
    """The module the program runs as, registered so pickle and multiprocessing find it."""
    module = types.ModuleType(name)
    module.__file__ = "solution.py"
    sys.modules[name] = module
    return module


def _run_script(code: str, emit) -> int:
    program, error = _compile_source(code, "solution.py")
    if program is None:
        sys.stderr.write(error)
        emit("syntax_error", _plain_text(error.strip()))
        return 1
    main = _program_module("__main__")
    emit("started")                                     # from here on, failures are the program's
    try:
        exec(program, main.__dict__)
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


def _serve_calls(code: str, channel: _Channel) -> int:
    """Load the program, say which names it defines, then answer the tester's calls until EOF."""
    program, error = _compile_source(code, "solution.py")
    if program is None:
        sys.stderr.write(error)
        channel.send(["syntax_error", _plain_text(error.strip())])
        return 1
    module = _program_module("solution")
    try:
        exec(program, module.__dict__)
    except BaseException as exc:  # noqa: BLE001 - includes SystemExit: the tests never ran
        traceback.print_exception(_type(exc), exc, exc.__traceback__.tb_next)
        channel.send(["program_error", _type(exc).__name__, _describe(exc)])
        return 1
    objects, names = [], []                             # handle -> value kept for the tester
    for key, value in list(module.__dict__.items())[:10000]:
        if _type(key) is str and not key.startswith("__") and callable(value):
            names.append([key, _len(objects)])
            objects.append(value)
    streams = (sys.stdout, sys.stderr)
    _flush(streams)                                     # the run ends with the tester: no later
    channel.send(["loaded", names])
    skipping = False                                    # see _Link: after a handle, sent-ahead
    while True:                                         # calls wait until the tester asks again
        request = channel.receive()
        if request is None:
            return 0
        ahead = _type(request) is list and _len(request) == 6 and request[5] is True
        if ahead and skipping:
            channel.send(["skipped"])
            continue
        answer = _answer(request, objects)
        skipping = ahead and answer[0] == "object"
        _flush(streams)
        channel.send(answer)


_OPERATIONS = {                         # op -> f(target, name, args, kwargs): what _Remote forwards
    "attr": lambda t, name, a, k: getattr(t, name),
    "call": lambda t, name, a, k: t(*a, **k),
    "item": lambda t, name, a, k: t[a[0]],
    "eq": lambda t, name, a, k: bool(t == a[0]),
    "iter": lambda t, *_: list(t),
    "next": lambda t, *_: next(t),
    "len": lambda t, *_: len(t),
    "bool": lambda t, *_: bool(t),
    "str": lambda t, *_: str(t),
}


def _answer(request, objects):
    """``[handle, op, name, args, kwargs]`` -> ``["ok", value]`` | ``["object", handle, type]`` |
    ``["raise", type name, message]``."""
    try:
        handle, op, name = request[0], request[1], request[2]
        target = objects[handle]
        args = [_unwrap(a, objects) for a in decode(request[3])]
        kwargs = {k: _unwrap(v, objects) for k, v in decode(request[4]).items()}
        value = _OPERATIONS[op](target, name, args, kwargs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: reported, the tester decides
        return ["raise", _type(exc).__name__, _describe(exc)]
    try:
        return ["ok", encode(value)]
    except NotPlain:
        objects.append(value)
        return ["object", _len(objects) - 1, _type(value).__name__]
    except BaseException as exc:  # noqa: BLE001 - e.g. an __iter__ that raises while encoding
        return ["raise", _type(exc).__name__, _describe(exc)]


def _unwrap(value, objects):
    """A handle the tester passed back (``{"handle": n}`` inside a dict tag) -> the object."""
    if _type(value) is dict and _len(value) == 1 and "\0handle" in value:
        return objects[value["\0handle"]]
    return value


# ----------------------------------------------------------------------------------------------
# The tester process


class ProgramError(Exception):
    """An exception the program raised that has no builtin class of the same name here."""


class ProgramExited(Exception):
    """The program process ended (or broke the protocol) while a test waited for it."""


class _Remote:
    """A value that stays in the program process: a function, a class, an object it returned."""

    __slots__ = ("_handle", "_kind", "_link")

    def __init__(self, link, handle: int, kind: str):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_kind", kind)

    def _ask(self, op, name="", args=(), kwargs=None):
        return self._link.ask(self._handle, op, name, args, kwargs or {})

    def __call__(self, *args, **kwargs):
        return self._ask("call", args=args, kwargs=kwargs)

    def __getattr__(self, name):
        return self._ask("attr", name)

    def __getitem__(self, key):
        return self._ask("item", args=(key,))

    def __iter__(self):
        items = self._ask("iter")
        if _type(items) is _Remote:
            raise TypeError(f"iterating a {self._kind} of the program gave values that are not "
                            "plain data")
        return iter(items)

    def __next__(self):
        return self._ask("next")

    def __len__(self):
        return self._ask("len")

    def __bool__(self):
        return self._ask("bool")

    def __str__(self):
        return self._ask("str")

    def __repr__(self):
        return f"<{self._kind} object of the program (not plain data)>"

    def __eq__(self, other):
        if _type(other) is _Remote:                     # both the program's: its own __eq__
            return other is self or self._ask("eq", args=(other,))
        return False                                    # never equal to plain data

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = object.__hash__


class _Link:
    """The tester's end of the call channel.

    Calls the next test steps will surely make, first and with literal arguments (``_foreseen``),
    are sent ahead (``send_ahead``), so the program answers them back to back instead of waiting
    for the tester between calls: it sees the same calls in the same order. Should one of them
    return a value that is not plain data (on which the step may then call methods), the program
    answers the rest of that batch with ``skipped`` and the steps ask again in their turn.
    """

    def __init__(self, channel: _Channel):
        self.channel, self.broken = channel, None
        self.sent: list = []                # [message, reply or _MISSING] in the program's order
        self.ahead = 0                      # of them, sent ahead and not yet used by a step

    def send_ahead(self, calls) -> None:
        """calls: [(handle, args, kwargs)] the next steps make, in order."""
        room = _PIPE_ROOM
        for handle, args, kwargs in calls:
            message = [handle, "call", "", encode(list(args)), encode(dict(kwargs)), True]
            data = json.dumps(message)
            room -= _len(data) + 4
            if room < 0 or self.broken:     # the pipe takes it all without blocking
                break
            self._send(message)
            self.ahead += 1

    def ask(self, handle, op, name, args, kwargs):
        if self.broken:
            raise ProgramExited(self.broken)
        try:
            message = [handle, op, name, self._encode(list(args)), self._encode(dict(kwargs))]
        except NotPlain as exc:
            raise TypeError(f"only plain data can be passed to the program, not {exc}") from None
        if self.ahead and self.sent[0][0][:5] == message:
            self.ahead -= 1
            reply = self._take(self.sent[0])
            if reply != ["skipped"]:
                return self._read(reply)
        return self._read(self._take(self._send(message)))

    def _take(self, entry):
        reply = self._reply_of(entry)
        del self.sent[next(i for i, e in enumerate(self.sent) if e is entry)]
        return reply

    def _send(self, message):
        entry = [message, _MISSING]
        self.sent.append(entry)
        try:
            self.channel.send(message)
        except OSError as exc:
            self.broken = f"the program broke the call protocol: {exc}"
        return entry

    def _reply_of(self, entry):
        """The reply to entry, reading (and keeping) the replies to requests sent before it."""
        while entry[1] is _MISSING and not self.broken:
            try:
                reply = self.channel.receive()
            except (OSError, ValueError) as exc:
                self.broken = f"the program broke the call protocol: {exc}"
                break
            if reply is None:
                self.broken = "the program process ended during a test"
                break
            next(e for e in self.sent if e[1] is _MISSING)[1] = reply
        return entry[1]

    def _encode(self, value):
        """Plain data, with the program's own values passed back by handle."""
        if _type(value) is _Remote:
            return ["dict", ["\0handle", value._handle]]
        if _type(value) in (list, tuple, set, frozenset):
            return [_type(value).__name__] + [self._encode(x) for x in value]
        if _type(value) is dict:
            return ["dict"] + [[encode(k), self._encode(v)] for k, v in value.items()]
        return encode(value)

    def _read(self, reply):
        """The value a reply carries; the program's exception raised as ours; ProgramExited
        (for this and every later call) when it sent nothing or something malformed."""
        if reply is _MISSING:
            raise ProgramExited(self.broken)
        why = "the program sent a malformed reply"
        if _type(reply) is list and _len(reply) == 3 and reply[0] == "raise" \
                and all(_type(x) is str for x in reply[1:]):
            raise _rebuild(reply[1], reply[2])
        try:
            if _type(reply) is list and reply:
                kind = reply[0]
                if kind == "ok" and _len(reply) == 2:
                    return decode(reply[1])
                if kind == "object" and _len(reply) == 3 and _type(reply[1]) is int \
                        and _type(reply[2]) is str:
                    return _Remote(self, reply[1], reply[2][:80])
        except ValueError as exc:
            why = f"the program sent a malformed reply ({exc})"
        self.broken = why
        raise ProgramExited(why)


def _rebuild(name: str, message: str) -> BaseException:
    """The program's exception as one of ours: a builtin Exception class by name, else
    ProgramError (SystemExit and the like never reach the tests as themselves)."""
    cls = _BUILTINS.get(name)
    text = _plain_text(message) or name
    if text.startswith(name):                           # "ValueError: x (solution.py line 2)"
        rest = text[_len(name):]
        text = rest[2:] if rest.startswith(": ") else rest.strip()
    if _isinstance(cls, type) and issubclass(cls, Exception) and name.isidentifier():
        try:
            return cls(text)
        except BaseException:  # noqa: BLE001 - a builtin with another signature
            pass
    return ProgramError(text)


class _Eq:
    """``__wb_eq__(left, right, actual_is_left)``: ``left == right``, remembered for the report."""

    def __init__(self):
        self.failed = None                              # (expected, actual) of the last False

    def __call__(self, left, right, actual_is_left=True):
        equal = left == right                           # plain data, or a handle (never equal)
        if not _isinstance(equal, bool):
            equal = bool(equal)
        if not equal:
            actual, expected = (left, right) if actual_is_left else (right, left)
            self.failed = (_show(expected), _show(actual))
        return equal


def start_tester(payload: bytes, channel_fds) -> int:
    """In the run's tester process: run the tests against the program process, report on fd 3."""
    job = json.loads(payload)
    _setup_process()
    emit = _emitter(job["nonce"])
    emit("started")
    steps = []
    for kind, source in job["steps"]:
        compiled, error = _compile_source(source, "tests.py", tree=True)
        if compiled is None:
            emit("test_error", _plain_text(source))
            return 0
        steps.append((kind, compiled[0], compiled[1].body))
    link = _Link(_Channel(*channel_fds))
    try:
        hello = link.channel.receive()
    except ValueError:
        hello = ["malformed"]
    names = _loaded_names(hello)
    if names is None:
        if _type(hello) is list and _len(hello) == 2 and hello[0] == "syntax_error":
            emit("syntax_error", _plain_text(hello[1]) or "syntax error")
        elif (_type(hello) is list and _len(hello) == 3 and hello[0] == "program_error"
              and all(_type(x) is str for x in hello[1:])):
            emit("program_error", hello[1][:80], _plain_text(hello[2]) or "an error")
        elif hello is None:
            emit("program_error", "Exit", "the program process ended while loading")
        else:
            emit("program_error", "Protocol", "the program process sent a malformed greeting")
        return 0
    entry = job.get("entry_point")
    namespace = {name: _Remote(link, handle, "function") for name, handle in names.items()
                 if name not in _BUILTINS or name == entry}    # the tests keep the real abs()
    eq = _Eq()
    namespace.update(__builtins__=dict(_BUILTINS), __name__="__main__", __wb_eq__=eq)
    index, setup_error = 0, None
    for at, (kind, code, _) in enumerate(steps):
        if kind == "case" and not link.ahead and setup_error is None:
            link.send_ahead(_foreseen_calls(steps[at:], namespace))
        if kind == "setup":
            if setup_error is None:
                try:
                    exec(code, namespace)
                except BaseException as exc:  # noqa: BLE001
                    setup_error = _describe(exc)
            continue
        eq.failed = None
        why, error = None, setup_error
        if setup_error is not None:
            why = "setup_error"
        else:
            try:
                exec(code, namespace)
            except AssertionError:
                why = "assertion"
            except ProgramExited as exc:
                why, error = "exited", str(exc)
            except BaseException as exc:  # noqa: BLE001 - a crash in this case only
                why, error = _type(exc).__name__, _describe(exc)
        expected, actual = eq.failed if (why == "assertion" and eq.failed) else (None, None)
        emit("case", index, why is None, why, expected, actual, error)
        index += 1
    emit("done")
    return 0


def _foreseen_calls(steps, namespace) -> list:
    """``[(stand-in, args, kwargs)]``: the one call to the program each of the next case steps
    will make before anything else can happen, up to the first step where that is not sure."""
    calls = []
    for kind, _, body in steps:
        call = _first_call(body, namespace) if kind == "case" else None
        if call is None:
            break
        calls.append((call[0]._handle, call[1], call[2]))
    return calls


class _Unsure(Exception):
    pass


def _inert(value) -> bool:
    """Whether using ``value`` in a test step cannot reach the program: plain data, a builtin
    function or class, a module, ``__wb_eq__`` (a function or class of the tests might)."""
    if _isinstance(value, type):
        return value.__module__ == "builtins"
    return _isinstance(value, (types.BuiltinFunctionType, types.ModuleType, _Eq)) \
        or _is_plain(value)


_BUILT = {                              # literal displays: no effect of their own
    ast.Tuple: lambda n: n.elts, ast.List: lambda n: n.elts, ast.Set: lambda n: n.elts,
    ast.Dict: lambda n: [x for pair in zip(n.keys, n.values) for x in pair],
    ast.Slice: lambda n: [p for p in (n.lower, n.upper, n.step) if p is not None],
}
_EFFECTS = {                            # may raise or run code once their operands are known
    ast.Attribute: lambda n: [n.value], ast.Subscript: lambda n: [n.value, n.slice],
    ast.BinOp: lambda n: [n.left, n.right], ast.UnaryOp: lambda n: [n.operand],
}


def _first_call(body, namespace):
    """``(stand-in, args, kwargs)`` when running ``body`` (one ``assert`` or expression) surely
    calls the program exactly once, as its first effect, with literal arguments, and nothing
    else in it can reach the program; else None. Names must already be bound to plain data,
    builtins, modules or ``__wb_eq__`` (a function of the tests might call the program itself),
    and no branch (``and``, ``if``, comprehensions) may skip or repeat the call."""
    if _len(body) != 1 or _type(body[0]) not in (ast.Assert, ast.Expr):
        return None
    builtins_ = namespace.get("__builtins__", {})
    found = []

    def value_of(name):
        if name in namespace:
            return namespace[name]
        if name in builtins_:
            return builtins_[name]
        raise _Unsure

    def effect():
        if not found:                                   # something before the call may fail
            raise _Unsure

    def scan(node):
        t = _type(node)
        if t is ast.Constant:
            return
        if t is ast.Name:
            value = value_of(node.id)
            if not _inert(value):
                raise _Unsure
            return
        if t is ast.Attribute and _type(node.value) is ast.Name:     # math.isclose: pure
            module = value_of(node.value.id)
            if _type(module) is types.ModuleType and _inert(getattr(module, node.attr, None)) \
                    and hasattr(module, node.attr):
                return
        if t in _BUILT or t in _EFFECTS:                # parts in evaluation order, then...
            for part in (_BUILT.get(t) or _EFFECTS[t])(node):
                if part is None:
                    raise _Unsure                       # {**d}
                scan(part)
            return None if t in _BUILT else effect()    # ...a build, or an operation
        if t is ast.Call:
            func = node.func
            if _type(func) is ast.Name and _type(namespace.get(func.id)) is _Remote:
                if found or any(_type(a) is ast.Starred for a in node.args) \
                        or any(k.arg is None for k in node.keywords):
                    raise _Unsure
                try:
                    found.append((namespace[func.id], [ast.literal_eval(a) for a in node.args],
                                  {k.arg: ast.literal_eval(k.value) for k in node.keywords}))
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    raise _Unsure from None
                return
            scan(func)
            for arg in node.args:
                scan(arg)
            for keyword in node.keywords:
                scan(keyword.value)
            return effect()
        if t is ast.Compare:
            scan(node.left)
            for comparator in node.comparators:
                scan(comparator)
                effect()                                # chained: later parts may not run
            return
        raise _Unsure                                   # branches, lambdas, f-strings, ...

    statement = body[0]
    try:
        scan(statement.test if _type(statement) is ast.Assert else statement.value)
        if not found:
            return None
        if _type(statement) is ast.Assert and statement.msg is not None:
            scan(statement.msg)                         # runs on failure only: no call there
            if _len(found) > 1:
                return None
    except (_Unsure, RecursionError):
        return None
    return found[0]


def _is_plain(value) -> bool:
    try:
        encode(value)
        return True
    except NotPlain:
        return False


def _loaded_names(hello):
    """``{name: handle}`` from the program's greeting, or None when it is not one."""
    if not (_type(hello) is list and _len(hello) == 2 and hello[0] == "loaded"
            and _type(hello[1]) is list):
        return None
    names = {}
    for pair in hello[1]:
        if not (_type(pair) is list and _len(pair) == 2 and _type(pair[0]) is str
                and _type(pair[1]) is int):
            return None
        if pair[0].isidentifier():
            names[pair[0]] = pair[1]
    return names
