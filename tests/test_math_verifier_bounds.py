"""verify_math returns within its timeout (plus a small margin) in the caller's thread, whatever
the input: hostile families for every path that runs before (or instead of) the sympy worker.

Each family is generated at several sizes, up to the extraction cap (20,000 characters) and the
parser cap (1,000 characters), because a superlinear path only shows at size: before the fix,
unclosed boxes cost 2 s at 20k characters and one 1 KB answer of big integer roots minutes.
"""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifiers import verify_math, verify_math_many
from verifiers._math_deadline import Overtime, check_time, deadline
from verifiers._math_extract import MAX_COMPLETION_CHARS, boxed_answers, hedge_group
from verifiers.math import warm_up

TIMEOUT_S = 0.5
MARGIN_S = 0.5          # slack for the work between two deadline checks
STALL_S = 2.0           # wall-clock slack for a scheduler stall (load 20 on 2 shared cores)
N = MAX_COMPLETION_CHARS


@pytest.fixture(scope="module", autouse=True)
def sympy_worker():
    assert warm_up(1) >= 1


def bounded(completion: str, gold: str = "5"):
    """The caller's thread spends at most timeout + margin of CPU on any input (the work the
    deadline bounds; CPU time is not inflated by other jobs), and the wall clock agrees up to a
    stall of the scheduler."""
    start, start_cpu = time.perf_counter(), time.thread_time()
    verdict = verify_math(completion, gold, timeout_s=TIMEOUT_S)
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - start_cpu
    why = (completion[:80], gold, elapsed, cpu, verdict.steps[-1:])
    assert cpu < TIMEOUT_S + MARGIN_S and elapsed < TIMEOUT_S + STALL_S, why
    assert verdict.score == float(verdict.correct)
    return verdict


def fill(unit: str, size: int = N) -> str:
    return unit * max(1, size // len(unit))


# ---------------------------------------------------------------------------------------------
# Extraction: every rule linear in the completion

EXTRACTION_FAMILIES = {
    "unclosed boxes": lambda n: fill("\\boxed{", n),
    "unclosed boxes with braces": lambda n: fill("\\boxed{{", n),
    "unclosed fbox after a closed box": lambda n: "\\boxed{5}" + fill("\\fbox{x", n),
    "open braces then one box": lambda n: fill("{", n - 20) + "\\boxed{5}",
    "escaped braces in a box": lambda n: "\\boxed{" + fill("\\{", n),
    "boxes joined by or": lambda n: fill("\\boxed{5} or ", n),
    "distinct boxes joined by commas": lambda n: "".join(
        f"\\boxed{{{k}}}, " for k in range(n // 12)),
    "spaced \\text between boxes": lambda n: "\\boxed{4}\\text{" + " " * (n - 30) + "x\\boxed{5}",
    "lone dollars": lambda n: fill("$a ", n),
    "spaced dollars": lambda n: fill("$ $", n),
    "money": lambda n: fill("$5 and ", n),
    "display maths unclosed": lambda n: fill("\\[x", n),
    "the answer is, repeated": lambda n: fill("the answer is ", n),
    "answer tags unclosed": lambda n: fill("<answer>", n),
    "#### repeated": lambda n: fill("#### ", n),
    "digits then a letter": lambda n: fill("1", n) + "x",
    "thousands groups then a letter": lambda n: "1" + fill(",000", n) + "x",
    "trailing commas in a box": lambda n: "\\boxed{5" + fill(",", n - 10) + "}",
    "trailing full stops": lambda n: "\\boxed{5" + fill(". ,", n - 10) + "}",
    "negations": lambda n: fill("not $\\boxed{1}$ rather than 2, ", n),
    "choose in a box": lambda n: "\\boxed{" + fill("a \\choose ", n - 10) + "}",
    "spaced digit groups": lambda n: "\\boxed{1" + fill(" 000", n - 12) + "/}",
    "angles": lambda n: "\\boxed{" + fill("60^\\circ 42' ", n - 10) + "}",
    "matrix ends": lambda n: fill("\\end{pmatrix}\\begin{pmatrix}", n),
    "labels": lambda n: fill("V_1:V_2=", n) + "11:21",
}


@pytest.mark.parametrize("family", sorted(EXTRACTION_FAMILIES))
def test_hostile_completions_are_bounded(family):
    for size in (N // 16, N // 4, N, 4 * N):
        bounded(EXTRACTION_FAMILIES[family](size))


def test_brace_matching_still_finds_the_boxes():
    # the one-pass brace matcher reads the same boxes as a scan per box did
    text = "{ \\boxed{1} {{ \\boxed{\\frac{2}{3}} \\boxed{ \\{4\\} } \\boxed{"
    assert boxed_answers(text) == ["1", "\\frac{2}{3}", "\\{4\\}"]
    assert hedge_group("\\boxed{3} \\text{ or } \\boxed{4}") == ["3", "4"]
    assert verify_math("\\boxed{" * 100 + " so \\boxed{7}", "7").correct


# ---------------------------------------------------------------------------------------------
# Parsing and judging: 1 KB answers that cost big-integer or quadratic work

def roots(q: int, e: int, k: int) -> str:
    return "+".join(f"\\sqrt[{q}]{{{b}^{{{e}}}+1}}" for b in range(2, 2 + k))


ANSWER_FAMILIES = {
    "big integer roots": lambda k: roots(997, 20000, k),
    "big square roots": lambda k: roots(2, 30000, k),
    "roots of huge powers": lambda k: roots(999, 90000, k),
    "roots of big literals": lambda k: "+".join([f"\\sqrt[999]{{{'9' * 60}}}"] * k),
    "big fractions added": lambda k: "+".join(
        f"\\frac{{{b}^{{9999}}}}{{{b + 1}^{{9000}}}}" for b in range(2, 2 + k)),
    "big powers multiplied": lambda k: "\\cdot".join(f"{b}^{{19999}}" for b in range(2, 2 + k)),
    "factorials": lambda k: "+".join(f"{4990 + j}!" for j in range(k)),
    "binomials": lambda k: "+".join(f"\\binom{{49999}}{{{20000 + j}}}" for j in range(k)),
    "powers of big literals": lambda k: "+".join([f"{'7' * 40}^{{999}}"] * k),
    "nested powers": lambda k: "(" * k + "2" + ")^{2}" * k,
    "roots of roots": lambda k: "\\sqrt[3]{" * k + "8" + "}" * k,
    "long digit strings": lambda k: "+".join(["1" * 200] * k),
    "decimals": lambda k: "+".join(["0." + "3" * 150] * k),
    "expressions in a list": lambda k: ", ".join(f"x^{{{j}}}+{j}" for j in range(12 * k)),
    "numbers in a list": lambda k: ", ".join(str(j) for j in range(40 * k)),
    "inequalities joined": lambda k: " and ".join(f"x>{j}" for j in range(12 * k)),
    "union of intervals": lambda k: "\\cup".join(f"({j},{j + 1})" for j in range(10 * k)),
    "repeated trig": lambda k: "+".join([f"\\sin(\\cos(\\tan(x^{{{k}}})))"] * 4 * k),
    "deep fractions": lambda k: "\\frac{1}{" * k + "2" + "}" * k,
    "text groups": lambda k: "\\text{" * k + "5" + "}" * k,
    "plus-minus": lambda k: "\\pm".join(["x"] * 10 * k),
    "set differences": lambda k: "\\setminus".join(["[0, 9]"] + [f"\\{{{j}\\}}" for j in range(9 * k)]),
    "ratios": lambda k: ", ".join(f"{j}:{j + 1}" for j in range(10 * k)),
    "decimal commas": lambda k: ", ".join(f"{j},{j + 10}" for j in range(10 * k)),
}


@pytest.mark.parametrize("family", sorted(ANSWER_FAMILIES))
@pytest.mark.parametrize("gold", ["5", "x^2+1", "1, 2, 3", "(1, 2)", "x > 2"])
def test_hostile_answers_are_bounded(family, gold):
    for k in (3, 10, 30):
        answer = ANSWER_FAMILIES[family](k)[:1000]
        bounded(f"\\boxed{{{answer}}}", gold)
        bounded(f"\\boxed{{5}} or \\boxed{{{answer}}}", gold)        # the hedge check judges too


def test_hostile_golds_and_batches_are_bounded():
    answers = [f(30)[:1000] for f in ANSWER_FAMILIES.values()]
    for answer in answers[:6]:
        bounded("\\boxed{5}", answer)
    start = time.perf_counter()
    verdicts = verify_math_many([(f"\\boxed{{{a}}}", "x^2+1") for a in answers],
                                timeout_s=TIMEOUT_S)
    # per pair, the in-process part is bounded by the timeout; the pool runs the rest
    assert time.perf_counter() - start < len(answers) * (TIMEOUT_S + MARGIN_S)
    assert not any(v.correct for v in verdicts)


def test_an_overrun_is_a_timeout_verdict_not_an_error():
    items = [f"x^{{{j}}}+{j}" for j in range(70)]             # ~700 characters
    v = verify_math("\\boxed{" + ", ".join(items[::-1]) + "}", ", ".join(items),
                    timeout_s=0.002)
    assert (v.correct, v.reason) == (False, "timeout")
    assert "time budget" in v.steps[-1]


def test_deadline_is_per_thread_and_nested_blocks_keep_the_earlier():
    check_time()                                       # no deadline: a no-op
    with deadline(time.perf_counter() + 60):
        with deadline(time.perf_counter() - 1):
            with pytest.raises(Overtime):
                check_time()
        check_time()


# ---------------------------------------------------------------------------------------------
# Property: any concatenation of hostile fragments, repeated, gets a verdict in time

FRAGMENTS = ["\\boxed{", "\\fbox{", "{", "}", "\\{", "\\sqrt[997]{", "^{9999}", "2^{", "!",
             "9999", "0.333", ",", " or ", " and ", "\\cup", "(", ")", "[", "x", "\\frac{",
             "\\text{", "$", "\\pm", "\\binom{", "the answer is ", "<answer>", "####", "=",
             ">", "\\sin(", "  ", "\n"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8),
       repeat=st.sampled_from([1, 30, 300, 3000]),
       gold=st.sampled_from(["5", "x^2+1", "1, 2", "[0, 1)", "\\sqrt{2}"]))
def test_repeated_hostile_fragments_get_a_verdict_in_time(parts, repeat, gold):
    text = "".join(parts) * repeat
    bounded(text, gold)
    bounded(f"\\boxed{{{text[:900]}}}", gold)
