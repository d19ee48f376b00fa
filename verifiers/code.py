"""Check code a model wrote: extract it, run it in the sandbox against tests, explain the verdict.

Two kinds of tests:

- ``tests``: assert-style code, as in MBPP's assert lists or HumanEval's ``check(candidate)``
  with ``entry_point``. The program runs first, then each assert (see ``_code_plan``), in one
  process.
- ``io_cases``: ``[(stdin, expected_stdout), ...]``, one sandboxed run per case. All output lines
  are compared, none skipped: trailing whitespace at the end of each line and blank lines at the
  very end are ignored; leading whitespace, blank lines elsewhere, and case count. With
  ``float_tol``, whitespace-separated tokens that both read as numbers may differ by that much
  (absolute or relative). After a timeout the remaining cases are not run: they count as failed.

Every run is a fresh sandboxed process (``verifiers.sandbox``: what it limits and what it does not).
With ``tests``, the program runs in one process and the tests in another, of another uid, that
alone writes the result records: the program only answers calls with plain data (builtin types,
checked recursively), and every assertion is evaluated by the tester on that data, so no object
can lie about equality and no hook, forged record or patched module of the program reaches the
verdict (``_code_harness`` says how, and what a test that needs more than plain data gets). A
pass needs the tester's complete, well-formed record sequence with every case passed. With
``io_cases`` the expected output never enters the sandbox: the caller compares stdout. A failure
of the sandbox itself is ``infra_error``, never a wrong answer, and rewards give ``None`` for it,
which TRL leaves out of the mean. Nothing the program writes makes these functions raise, and
text shown from it is ``printable`` (no raw control characters).
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import unicodedata
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from . import sandbox
from ._code_plan import plan_tests
from .sandbox import Limits

STATUSES = ("passed", "failed", "timeout", "memory", "runtime_error", "syntax_error", "no_code",
            "infra_error")
_SHOWN_CHARS = 2000                     # stdout/stderr kept in a verdict
_CASE_CHARS = 400                       # a case's input / expected / actual in a verdict
_PYTHON_TAGS = {"", "python", "python3", "py", "py3", "ipython", "pycon"}
_OPENER = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)")      # one line: fence, tag
_NOT_PLAIN = " object of the program (not plain data)>"  # how the tester shows such a value
_FEEDBACK_CHARS = 4000                  # execution_feedback as a whole
_FEEDBACK_LINE = 300                    # one line of it
# Control characters a terminal or a widget would act on: C0 but tab and newline, DEL, C1, and
# the invisible format characters that reorder or hide text (bidi overrides, zero widths).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                      "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")
_KEYWORDS = ("def class import from if elif else for while try except finally with return raise "
             "assert async await global nonlocal del pass break continue yield lambda").split()
_CODE_LINE = re.compile(rf"^\s*(?:(?:{'|'.join(_KEYWORDS)})\b|@\w|#!"   # a statement keyword,
                        r"|[A-Za-z_][\w.]*\s*\("                          # a call: print(...)
                        r"|[\w.\[\]]+(?:\s*,\s*[\w.\[\]]+)*\s*[-+*/%|&^]?=[^=])")  # a = / a, b =
_THINK = re.compile(r"<think>.*?(</think>|\Z)", re.S)


@dataclass(frozen=True)
class CaseFailure:
    """The first case that did not pass."""

    case: str                   # the assert line, or the stdin given
    expected: str | None        # repr of the expected value, or the expected stdout
    actual: str | None          # repr of what came back, or the stdout printed
    error: str | None           # the exception or why the run ended, if any


@dataclass(frozen=True)
class CodeVerdict:
    """Why a completion's code passed or not. ``fraction``: n_passed / n_total (0 if no cases)."""

    status: str                 # one of STATUSES
    passed: bool                # status == "passed"
    n_passed: int
    n_total: int
    first_failure: CaseFailure | None
    reason: str                 # one sentence: why this status
    stdout: str                 # head of what the program printed (of the first failing run)
    stderr: str                 # tail of its stderr: a traceback ends there
    wall_s: float               # all runs together
    cpu_s: float
    code: str | None            # what was extracted from the completion and run

    def __post_init__(self):
        if self.status not in STATUSES or self.passed != (self.status == "passed"):
            raise ValueError(f"inconsistent verdict: status={self.status!r}, passed={self.passed}")

    @property
    def fraction(self) -> float:
        return self.n_passed / self.n_total if self.n_total else 0.0


def extract_code(completion: str | list[dict], *, block: str = "last") -> str | None:
    """The code in a completion, or None when there is none.

    completion: a string, or chat messages (``[{"role", "content"}, ...]``: the last assistant one).
    ``<think>...</think>`` is dropped first (an unclosed one, to the end). Then fenced blocks (````` or ``~~~``, tagged
    python/py or untagged; an unclosed last fence runs to the end): the ``block="last"`` one or
    the ``"longest"``. Without fences the text is taken as code from its first line that looks like
    code, so a sentence before it is skipped but one after it is a syntax error, as it would be.
    """
    text = _THINK.sub("", _message_text(completion))
    fenced = _fenced_blocks(text)
    blocks = [textwrap.dedent(body) for tag, body in fenced if tag.lower() in _PYTHON_TAGS]
    if blocks:
        chosen = max(blocks, key=len) if block == "longest" else blocks[-1]
        return chosen if chosen.strip() else None
    if fenced:
        return None                                     # fenced, but in another language
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _CODE_LINE.match(line)), None)
    return None if start is None else "".join(lines[start:])


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``[(tag, body), ...]`` of fenced blocks, one pass over the lines (linear in the text).

    An opening fence (three or more backticks or tildes, then a tag) needs a line after it; the
    block ends at a line holding the same fence alone, or at the end of the text.
    """
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines) - 1:
        opener = _OPENER.match(lines[i])
        if opener is None:
            i += 1
            continue
        fence, tag = opener[1], opener[2]
        j = i + 1
        while j < len(lines) and lines[j].strip(" \t") != fence:
            j += 1
        if j < len(lines):
            blocks.append((tag, "".join(line + "\n" for line in lines[i + 1:j])))
        else:
            blocks.append((tag, "\n".join(lines[i + 1:])))
        i = j + 1
    return blocks


def printable(text: str, *, limit: int | None = None) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\r``, ``\\u202e``), so
    that program output shown to a model or in a widget cannot move the cursor, clear a screen,
    hide or reorder text. Newlines and tabs stay; ``limit`` cuts to that many characters."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def check_code(completion_or_code: str | list[dict], *, tests: str | None = None,
               io_cases: list[tuple[str, str]] | None = None, entry_point: str | None = None,
               timeout_s: float = 3.0, memory_mb: int = 512, float_tol: float | None = None,
               block: str = "last", limits: Limits | None = None) -> CodeVerdict:
    """Run the code in a completion against ``tests`` or ``io_cases``; never raises for the code.

    timeout_s and memory_mb bound each run (the whole test file, or one io case); ``limits``, if
    given, replaces both with a full ``sandbox.Limits``. Raises ValueError for unusable tests (they
    are the caller's, not the model's): neither or both of tests/io_cases, tests that do not parse.
    """
    if (tests is None) == (io_cases is None):
        raise ValueError("give exactly one of tests= and io_cases=")
    limits = limits or Limits(timeout_s=timeout_s, memory_mb=memory_mb)
    steps = plan_tests(tests, entry_point) if tests is not None else None
    cases = _io_pairs(io_cases) if io_cases is not None else None
    code = extract_code(completion_or_code, block=block)
    n_total = len(cases) if cases is not None else sum(s.kind == "case" for s in steps)
    if code is None:
        return _verdict("no_code", 0, n_total, None, "no Python code found in the completion",
                        None, None)
    if steps is not None:
        return _check_tests(code, steps, entry_point, limits)
    return _check_io(code, cases, limits, float_tol)


def check_code_many(jobs, workers: int | None = None) -> list[CodeVerdict]:
    """check_code over many jobs in parallel; verdicts in the order of the jobs.

    jobs: dicts of check_code's keyword arguments, the completion under ``"completion"`` or
    check_code's own name ``"completion_or_code"``.
    workers: parallel runs, default the number of CPUs (each run is one process).
    """
    jobs = list(jobs)

    def one(job: dict) -> CodeVerdict:
        job = dict(job)
        if ("completion" in job) == ("completion_or_code" in job):
            raise ValueError("a job needs exactly one of completion= and completion_or_code=")
        completion = job.pop("completion") if "completion" in job else job.pop("completion_or_code")
        return check_code(completion, **job)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(one, jobs))


def outputs_match(actual: str, expected: str, *, float_tol: float | None = None) -> bool:
    """Whether stdout matches, line by line, all lines (see the module docstring)."""
    got, want = _lines(actual), _lines(expected)
    if len(got) != len(want):
        return False
    return all(g == w or (float_tol is not None and _close(g, w, float_tol))
               for g, w in zip(got, want))


# ----------------------------------------------------------------------------------------------
# Rewards (TRL contract: f(prompts, completions, **columns) -> list[float | None])


def code_pass_reward(prompts, completions, tests=None, io_cases=None, entry_point=None,
                     **kw) -> list[float | None]:
    """1.0 when every test passes, else 0.0; None for an infrastructure failure or a row with no
    tests (TRL leaves None out). Columns are lists aligned with completions; options such as
    ``timeout_s``, ``memory_mb``, ``float_tol``, ``workers`` may be bound with functools.partial.
    """
    verdicts = _reward_verdicts(completions, tests, io_cases, entry_point, kw)
    return [None if v is None else float(v.passed) for v in verdicts]


def code_fraction_reward(prompts, completions, tests=None, io_cases=None, entry_point=None,
                         **kw) -> list[float | None]:
    """The fraction of test cases passed (partial credit); None as in code_pass_reward."""
    verdicts = _reward_verdicts(completions, tests, io_cases, entry_point, kw)
    return [None if v is None else v.fraction for v in verdicts]


def execution_feedback(verdict: CodeVerdict) -> str:
    """A short message for the model's next turn (RL from execution feedback).

    Printable (``printable``: no raw control characters from the program's output) and at most
    ``_FEEDBACK_CHARS`` characters, lines cut at ``_FEEDBACK_LINE``.
    """
    lines = _feedback_lines(verdict)
    text = "\n".join(printable(line, limit=_FEEDBACK_LINE) for line in lines)
    return text if len(text) <= _FEEDBACK_CHARS else text[:_FEEDBACK_CHARS - 3] + "..."


def _feedback_lines(verdict: CodeVerdict) -> list[str]:
    if verdict.status == "passed":
        return [f"All {verdict.n_total} tests passed."]
    reason = verdict.reason[:1].upper() + verdict.reason[1:].rstrip(".") + "."
    if verdict.status in ("no_code", "infra_error"):
        return [reason]
    lines = [f"{verdict.n_passed} of {verdict.n_total} tests passed. {reason}"]
    failure = verdict.first_failure
    if failure is not None and verdict.status not in ("syntax_error", "timeout"):
        lines.append(f"First failing test: {failure.case}")
        if failure.expected is not None:
            lines.append(f"  expected: {failure.expected}")
            lines.append(f"  got:      {failure.actual}")
        elif failure.error:
            lines.append(f"  error: {failure.error}")
    tail = [line for line in verdict.stderr.strip().splitlines() if line.strip()][-6:]
    if tail and verdict.status in ("syntax_error", "runtime_error", "memory"):
        lines += ["stderr:", *tail]
    return lines


# ----------------------------------------------------------------------------------------------


def _message_text(completion) -> str:
    if isinstance(completion, str):
        return completion
    messages = list(completion or [])
    chosen = next((m for m in reversed(messages) if m.get("role") == "assistant"),
                  messages[-1] if messages else {})
    content = chosen.get("content") or ""
    if isinstance(content, list):                                # multimodal parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content


def _io_pairs(io_cases) -> list[tuple[str, str]]:
    pairs = []
    for case in io_cases:
        if isinstance(case, dict):
            case = (case.get("input", case.get("stdin")), case.get("output", case.get("stdout")))
        stdin, expected = case
        if not isinstance(stdin, str) or not isinstance(expected, str):
            raise ValueError(f"an io case must be (stdin, expected_stdout) strings, got {case!r}")
        pairs.append((stdin, expected))
    if not pairs:
        raise ValueError("io_cases is empty")
    return pairs


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _close(got: str, want: str, tol: float) -> bool:
    got_tokens, want_tokens = got.split(), want.split()
    if len(got_tokens) != len(want_tokens):
        return False
    for g, w in zip(got_tokens, want_tokens):
        if g == w:
            continue
        try:
            if not math.isclose(float(g), float(w), rel_tol=tol, abs_tol=tol):
                return False
        except ValueError:
            return False
    return True


def _cut(text: str | None, limit: int = _CASE_CHARS, *, tail: bool = False) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return "..." + text[-limit:] if tail else text[:limit] + "..."


def _verdict(status, n_passed, n_total, failure, reason, result, code, *, wall=0.0, cpu=0.0):
    out = err = ""
    if result is not None:
        out = printable(_cut(result.stdout.decode("utf-8", "replace"), _SHOWN_CHARS))
        err = printable(_cut(result.stderr.decode("utf-8", "replace"), _SHOWN_CHARS, tail=True))
    if failure is not None:
        failure = CaseFailure(*(None if f is None else printable(f) for f in (
            failure.case, failure.expected, failure.actual, failure.error)))
    return CodeVerdict(status, status == "passed", n_passed, n_total, failure, printable(reason),
                       out, err, round(wall, 4), round(cpu, 4), code)


_OPTIONAL_STR = (str, type(None))
_RECORD_FIELDS = {                      # kind -> the type of each field after it
    "started": (),
    "syntax_error": (_OPTIONAL_STR,),
    "program_error": (str, _OPTIONAL_STR),
    "test_error": (_OPTIONAL_STR,),
    "case": (int, bool, _OPTIONAL_STR, _OPTIONAL_STR, _OPTIONAL_STR, _OPTIONAL_STR),
    "done": (),
}


def _records(raw: bytes, nonce: str) -> tuple[list[tuple], bool]:
    """(the records of the result channel in order, whether all of it was well formed).

    A record is one JSON line ``[nonce, seq, kind, *fields]``, ``seq`` counting from 0, fields of
    the types ``_RECORD_FIELDS`` gives (``bool`` exactly, not an int). Reading stops at the
    first line that is not such a record, an unfinished last line included: never raises.
    """
    lines = raw.split(b"\n")
    records = []
    for seq, line in enumerate(lines[:-1]):                     # the last piece has no newline
        try:
            record = json.loads(line)
        except (ValueError, RecursionError, MemoryError):
            return records, False
        if not (type(record) is list and len(record) >= 3 and record[0] == nonce
                and type(record[1]) is int and record[1] == seq and type(record[2]) is str):
            return records, False
        fields = _RECORD_FIELDS.get(record[2])
        if fields is None or len(record) != 3 + len(fields) or not all(
                type(value) in (kind if isinstance(kind, tuple) else (kind,))
                for value, kind in zip(record[3:], fields)):
            return records, False
        records.append(tuple(record[2:]))
    return records, lines[-1] == b""


def _outcome(result, records: dict, limits) -> tuple[str, str] | None:
    """(status, reason) when how the run ended decides the verdict by itself, else None."""
    if result.infra_error:
        return "infra_error", f"the sandbox failed (not the code's fault): {result.infra_error}"
    if "test_error" in records:
        return "infra_error", "the tests do not compile in the sandbox"
    if "syntax_error" in records:
        return "syntax_error", records["syntax_error"][1] or "syntax error"
    # the program runs alongside the tester: what it alone causes (an OOM kill, a flood of output,
    # the clock) may end the run before the tester has said it started, and is still its doing
    if result.memory_exceeded and "started" not in records:
        return "memory", "the run used more memory than its limit (all its processes and files)"
    if result.timed_out:
        cpu = limits.cpu_s or limits.timeout_s
        return "timeout", f"timed out (limits: {limits.timeout_s:g} s wall, {cpu:g} s CPU)"
    if result.output_exceeded:
        return "runtime_error", f"printed more than the output limit ({limits.output_bytes} bytes)"
    if "started" not in records:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        return "infra_error", f"the harness failed before the program started: {tail}"
    if "program_error" in records:
        _, kind, description = records["program_error"]
        if kind == "MemoryError" or result.memory_exceeded:
            return "memory", f"ran out of memory: {description}"
        if kind in ("Exit", "Protocol"):                # said by the tester, not raised
            return "runtime_error", f"{description}, before the tests ran"
        return "runtime_error", f"the program raised {description}"
    if result.memory_exceeded:
        return "memory", "the run used more memory than its limit (all its processes and files)"
    return None


def _crash(result, what: str) -> tuple[str, str]:
    if result.memory_exceeded or b"MemoryError" in result.stderr[-4000:]:
        return "memory", "ran out of memory"
    if result.signal is not None:
        return "runtime_error", f"{what} was killed by signal {result.signal}"
    return "runtime_error", f"{what} exited with code {result.exit_code}"


def _check_tests(code: str, steps, entry_point, limits) -> CodeVerdict:
    """The program runs in one process, the tests in another that alone reports (the harness's
    docstring): a pass needs the tester's complete record sequence, every case passed."""
    nonce = secrets.token_hex(16)
    labels = [s.label for s in steps if s.kind == "case"]
    n_total = len(labels)
    tester = {"nonce": nonce, "entry_point": entry_point,
              "steps": [(s.kind, s.source) for s in steps]}
    result = sandbox.run({"mode": "tests", "nonce": "", "code": code}, limits=limits,
                         tester=tester)
    records, well_formed = _records(result.record, nonce)
    cases = [r for r in records if r[0] == "case"]
    cases = cases[:next((i for i, r in enumerate(cases) if r[1] != i), len(cases))]
    other = {r[0]: r for r in records if r[0] != "case"}
    n_passed = sum(1 for r in cases[:n_total] if r[2])
    first_bad = next((i for i in range(n_total) if i >= len(cases) or not cases[i][2]), None)
    why, failure = None, None                      # why: "assertion", "exited", "MemoryError"...
    if first_bad is not None:
        missing = (None, None, None, "missing", None, None, "did not run")
        why, expected, actual, error = (cases[first_bad] if first_bad < len(cases)
                                        else missing)[3:]
        failure = CaseFailure(labels[first_bad], expected, actual, error or why)

    def verdict(status, reason):
        return _verdict(status, n_total if status == "passed" else n_passed, n_total, failure,
                        reason, result, code, wall=result.wall_s, cpu=result.cpu_s)

    decided = _outcome(result, other, limits)
    if decided:
        return verdict(*decided)
    if not well_formed:
        return verdict("infra_error", "the tester's records were malformed (a harness bug)")
    if "done" not in other or len(cases) != n_total:
        return verdict(*_crash(result, "the tester, before the tests finished,"))
    if result.exit_code != 0:
        return verdict(*_crash(result, "the tester, after the tests,"))
    if first_bad is None:
        return verdict("passed", f"all {n_total} tests passed")
    if why == "assertion" and (failure.actual or "").endswith(_NOT_PLAIN):
        kind = failure.actual[1:-len(_NOT_PLAIN)]
        return verdict("failed", f"returned an object of class {kind}, not plain data: only "
                                 "numbers, strings, lists, dicts... can equal what a test expects")
    if why == "assertion":
        return verdict("failed", "a test assertion failed")
    if why == "MemoryError" or (why == "exited" and result.memory_exceeded):
        return verdict("memory", "ran out of memory in a test")
    if why == "exited":
        return verdict("runtime_error", f"{failure.error} (a crash, an exit or a broken reply)")
    return verdict("runtime_error", f"a test raised {failure.error}")


def _check_io(code: str, cases, limits, float_tol) -> CodeVerdict:
    nonce = secrets.token_hex(16)
    payload = {"mode": "script", "nonce": nonce, "code": code}
    n_passed, wall, cpu = 0, 0.0, 0.0
    first = None                                     # (status, reason, failure, result)
    last_result = None
    for stdin, expected in cases:
        room = max(limits.output_bytes, 2 * len(expected.encode()) + 4096)
        result = sandbox.run(payload, stdin=stdin.encode(), limits=replace(limits,
                                                                           output_bytes=room))
        last_result = result
        wall, cpu = wall + result.wall_s, cpu + result.cpu_s
        # the program itself writes these (classification only; its stdout decides a pass)
        records, _ = _records(result.record, nonce)
        stdout = result.stdout.decode("utf-8", "replace")
        outcome = _outcome(result, {r[0]: r for r in records if r[0] != "test_error"}, limits)
        if outcome:
            pass
        elif result.exit_code != 0:
            outcome = _crash(result, "the program")
        elif outputs_match(stdout, expected, float_tol=float_tol):
            n_passed += 1
            continue
        else:
            outcome = ("failed", "wrong output")
        if first is None:
            error = None if outcome[0] == "failed" else outcome[1]
            failure = CaseFailure(_cut(stdin), _cut(expected), _cut(stdout), error)
            first = (*outcome, failure, result)
        if outcome[0] in ("syntax_error", "timeout", "infra_error"):
            break                                    # the remaining cases would end the same way
    if first is None:
        return _verdict("passed", n_passed, len(cases), None, f"all {len(cases)} tests passed",
                        last_result, code, wall=wall, cpu=cpu)
    status, reason, failure, result = first
    return _verdict(status, n_passed, len(cases), failure, reason, result, code, wall=wall,
                    cpu=cpu)


def _reward_verdicts(completions, tests, io_cases, entry_point, kw) -> list[CodeVerdict | None]:
    n = len(completions)
    options = {k: kw[k] for k in ("timeout_s", "memory_mb", "float_tol", "block") if k in kw}

    def column(values):
        if values is None or isinstance(values, str):
            return [values] * n                                  # one value for every row
        if len(values) != n:
            raise ValueError(f"a column has {len(values)} rows for {n} completions")
        return values

    jobs = []
    for completion, t, io, ep in zip(completions, column(tests), column(io_cases),
                                     column(entry_point)):
        jobs.append(None if (t is None) == (io is None) else
                    dict(completion=completion, tests=t, io_cases=io, entry_point=ep, **options))

    def one(job):
        if job is None:
            return None
        try:
            verdict = check_code(job.pop("completion"), **job)
        except ValueError as exc:
            warnings.warn(f"code reward: unusable tests, reward None: {exc}", stacklevel=3)
            return None
        if verdict.status == "infra_error":
            warnings.warn(f"code reward: {verdict.reason}; reward None", stacklevel=3)
            return None
        return verdict

    with ThreadPoolExecutor(max_workers=kw.get("workers") or os.cpu_count() or 1) as pool:
        return list(pool.map(one, jobs))
