"""verifiers.math on small fixed inputs: extraction, normalisation, equivalence, bounds, API."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from verifiers import MathVerdict, math_reward, verify_math, verify_math_many
from verifiers.math import warm_up

DATA = Path(__file__).parent.parent / "benchmarks" / "data" / "math_pairs.jsonl"
HELDOUT = DATA.with_name("math_pairs_heldout.jsonl")       # written without reading the verifier
NOTATIONS = DATA.with_name("math_pairs_notations.jsonl")   # issue 17's classes, both directions
MARGIN_S = 0.5          # scheduling slack on a loaded 2-core machine
# Non-linear inequality whose real roots sympy takes many seconds to isolate.
SLOW_FOR_SYMPY = "(x+1)^{60}-3x^{59}+7>0"


@pytest.fixture(scope="module", autouse=True)
def sympy_worker():
    """Start a worker once, so no test measures a cold start."""
    assert warm_up(1) >= 1


def equal(completion, gold, **options) -> bool:
    return verify_math(completion, gold, **options).correct


# ---------------------------------------------------------------------------------------------
# The verdict

def test_verdict_is_a_frozen_record_of_the_path():
    v = verify_math("So the answer is $\\boxed{\\frac{1}{2}}$.", "0.5")
    assert isinstance(v, MathVerdict) and v.correct and v.score == 1.0
    assert (v.reason, v.extracted, v.pred_normalised, v.kind) == ("equal", "\\frac{1}{2}", "1/2",
                                                                   "decimal")
    assert v.steps[0] == "extracted '\\\\frac{1}{2}' from \\boxed{}"
    assert "exact rational compare: equal" in v.steps
    assert 0 <= v.seconds < 0.1
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.correct = False


def test_wrong_answer_scores_zero_and_says_why():
    v = verify_math("\\boxed{3}", "4")
    assert (v.correct, v.score, v.reason) == (False, 0.0, "not_equal")
    assert v.steps[-1] == "exact rational compare: not equal"


# ---------------------------------------------------------------------------------------------
# Extraction

@pytest.mark.parametrize("completion", [
    "Thus $\\boxed{\\frac{3}{4}}$.",
    "Thus $\\boxed{\\boxed{\\frac{3}{4}}}$.",               # nested box
    "Thus \\fbox{$\\frac{3}{4}$}",
    "<think>...</think><answer>3/4</answer>",
    "<answer>The probability is 3/4.</answer>",
    "The answer is $0.75$.",
    "Final Answer: The final answer is $\\frac34$. I hope it is correct.",
    "**Answer:** 3/4",
    "Three quarters of them: 0.75 of the total\n#### 0.75",
    "We get \\(\\tfrac{3}{4}\\)",
    "We get \\[\\dfrac{3}{4}\\]",
    "3/4",
])
def test_extraction_formats(completion):
    assert equal(completion, "\\frac{3}{4}")


def test_box_with_nested_braces():
    v = verify_math("\\boxed{\\frac{\\sqrt{3}}{2}} and more text", "\\frac{1}{2}\\sqrt{3}")
    assert v.extracted == "\\frac{\\sqrt{3}}{2}" and v.correct


def test_last_number_fallback_is_optional():
    text = "She buys 3 packs of 4, so she has 12 pencils"
    assert equal(text, "12")
    v = verify_math(text, "12", fallback_last_number=False)
    assert (v.correct, v.reason) == (False, "no_answer")


def test_extraction_order_is_configurable():
    text = "\\boxed{5}\n#### 7"
    assert equal(text, "5")
    assert equal(text, "7", extraction=("gsm8k", "boxed"))


def test_gold_may_be_a_gsm8k_solution_or_boxed():
    assert equal("#### 72", "Natalia sold 48/2 = 24 clips in May.\n#### 72")
    assert equal("72", "so the total is $\\boxed{72}$")


def test_money_dollars_are_not_maths_delimiters():
    assert equal("I paid $5 and then $10 more.", "10")


@pytest.mark.parametrize("completion,gold", [
    ("It is either $\\boxed{3}$ or $\\boxed{4}$.", "4"),
    ("The answer is 3 or 4.", "4"),
    ("The answer is $\\boxed{3 \\text{ or } 4}$.", "4"),
    ("So $x = \\pm 2$: $\\boxed{\\pm 2}$", "2"),
    ("The answer is $\\boxed{2, -2}$", "2"),
])
def test_hedging_is_not_rewarded(completion, gold):
    v = verify_math(completion, gold)
    assert not v.correct and v.reason in ("hedged", "not_equal")


def test_same_answer_boxed_twice_is_not_a_hedge():
    assert equal("$\\boxed{\\frac12}$, i.e. $\\boxed{0.5}$", "1/2")


def test_several_boxes_for_a_list_gold_are_read_together():
    assert equal("$\\boxed{2}$ and $\\boxed{3}$", "2, 3")


@pytest.mark.parametrize("completion,gold,correct", [
    ("First try: $\\boxed{6}$. Wait, I double counted; correcting this, the answer is $\\boxed{8}$.",
     "8", True),                                         # a correction: the later box counts
    ("First try: $\\boxed{6}$. Wait, I double counted; correcting this, the answer is $\\boxed{8}$.",
     "6", False),
    ("So the answer is \\boxed{7} \\text{ or } \\boxed{8}.", "7", False),   # alternatives: a hedge
    ("$\\boxed{3}$\n$\\boxed{4}$", "4", False),
    ("\\boxed{3} \\quad \\boxed{4}", "4", False),
])
def test_a_box_after_more_reasoning_supersedes_one_offered_alongside_does_not(completion, gold,
                                                                              correct):
    v = verify_math(completion, gold)
    assert v.correct is correct, v.steps
    if not correct and gold != "6":
        assert v.reason == "hedged"


def test_open_interval_with_an_infinite_end_is_an_interval_not_a_pair():
    assert equal("$\\boxed{\\mathbb{R}}$", "(-\\infty, \\infty)")
    assert equal("$\\boxed{x > 2}$", "(2, \\infty)")
    assert not equal("$\\boxed{[2, \\infty)}$", "(2, \\infty)")
    assert equal("$\\boxed{(1, 2)}$", "(1, 2)")           # a finite pair stays a pair
    assert not equal("$\\boxed{\\{1, 2\\}}$", "(1, 2)")


def test_a_choice_letter_may_be_followed_by_its_value_but_not_by_another_choice():
    assert equal("The answer is (C) 12.", "\\text{(C)}")
    assert equal("The answer is C) 12", "(C)")
    assert not equal("The answer is (D) 12.", "\\text{(C)}")
    assert not equal("The answer is (C) or (D).", "\\text{(C)}")


def test_a_clock_time_is_read_whole():
    assert equal("Starting at 1:30, the movie ends at 3:45 PM.", "3:45")
    assert not equal("Starting at 1:30, the movie ends at 3:40 PM.", "3:45")
    assert equal("Answer:5", "5")


# ---------------------------------------------------------------------------------------------
# Normalisation

@pytest.mark.parametrize("spelling", [
    "\\frac{1}{2}", "\\dfrac{1}{2}", "\\tfrac12", "\\frac12", "1/2", "0.5", "0.50",
    "\\left(\\frac{1}{2}\\right)", "\\!\\frac{1}{2}\\,", "\\displaystyle \\frac{1}{2}",
    "x = \\frac{1}{2}", "2^{-1}", "\\frac{2}{4}", "\\text{0.5}",
])
def test_spellings_of_one_half(spelling):
    assert equal(f"\\boxed{{{spelling}}}", "\\frac{1}{2}")


@pytest.mark.parametrize("pred,gold", [
    ("\\sqrt3", "\\sqrt{3}"), ("2 \\cdot 3", "6"), ("2 \\times 3", "6"), ("30^\\circ", "30"),
    ("30^{\\circ}", "30"), ("30°", "30"), ("50\\%", "50"), ("50 percent", "50\\%"),
    ("5 \\text{ cm}", "5"), ("12 \\text{ apples}", "12"), ("\\$18.00", "18"),
    ("1,000", "1000"), ("1{,}000", "1000"), ("1\\,000", "1000"), ("1,000,000", "10^6"),
    ("2\\frac{1}{2}", "\\frac{5}{2}"), ("2 1/2", "2.5"), ("-1\\frac{1}{4}", "-1.25"),
    ("x = 3", "3"), ("3", "x = 3"), ("\\infty", "\\infty"), ("\\pi", "\\pi"),
    ("e^{i\\pi}", "-1"), ("i^2", "-1"), ("√3", "\\sqrt3"), ("−5", "-5"), ("forty-two", "42"),
    ("0.\\overline{3}", "\\frac13"), ("1.5e3", "1500"), ("\\text{(C)}", "C"),
])
def test_normalisation(pred, gold):
    assert equal(f"\\boxed{{{pred}}}", gold)


def test_mixed_number_only_where_unambiguous():
    assert not equal("\\boxed{2\\frac{1}{2}x}", "\\frac{5}{2}x")    # 2 * x/2 = x
    assert equal("\\boxed{2\\frac{1}{2}x}", "x")


def test_percent_has_no_times_100_leniency():
    assert not equal("0.5", "50")
    assert not equal("50", "0.5")
    assert equal("50\\%", "0.5")       # a percent sign on one side: 50% is 0.5


# ---------------------------------------------------------------------------------------------
# Equivalence

@pytest.mark.parametrize("gold,pred,same", [
    # integers, rationals, decimals at the precision written
    ("72", "72.0", True), ("72", "73", False), ("\\frac{2}{3}", "\\frac{3}{2}", False),
    ("3.14", "3.14159", True), ("3.14", "3.1", False), ("\\frac{1}{3}", "0.333", False),
    ("0.33", "\\frac{1}{3}", True), ("1.41", "\\sqrt{2}", True), ("\\sqrt{2}", "1.414", False),
    # constants: the known false positives and misses of Math-Verify
    ("1-\\frac{1}{e}", "1+\\frac{1}{e}", False), ("4", "4\\sqrt{2}", False),
    ("\\sqrt{1/n}", "\\frac{1}{\\sqrt{n}}", True), ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\frac{\\pi}{6}", "30^\\circ", True), ("\\log_2 8", "3", True), ("\\sqrt[3]{-8}", "-2", True),
    # expressions
    ("x^2+2x+1", "(x+1)^2", True), ("x^2+2x+1", "(x-1)^2", False), ("|x|", "x", False),
    ("\\sin^2 x", "1-\\cos^2 x", True), ("2x", "2y", False),
    # equations and solution sets
    ("y=2x+3", "2x-y+3=0", True), ("y=2x+3", "y=2x-3", False), ("x=3", "y=3", False),
    ("2, 3", "x=3 \\text{ or } x=2", True), ("2, 3", "2", False), ("\\pm 2", "2, -2", True),
    ("x = \\frac{-1 \\pm \\sqrt{5}}{2}", "\\frac{-1-\\sqrt5}{2}, \\frac{-1+\\sqrt5}{2}", True),
    # intervals and inequalities: open vs closed matters
    ("[1,2)", "[1,2]", False), ("(-\\infty, 2]", "x \\le 2", True), ("(-2,2)", "-2<x<2", True),
    ("(-\\infty,-1)\\cup(1,\\infty)", "x<-1 \\text{ or } x>1", True), ("x>5", "x \\ge 5", False),
    ("(-2, 2)", "x^2 < 4", True),                                  # settled by sympy
    # sets are unordered, tuples are not, (1,2) is not [1,2]
    ("\\{1,2,3\\}", "\\{3,2,1\\}", True), ("(1,2)", "(2,1)", False), ("(1,2)", "[1,2]", False),
    ("\\{1,2,3\\}", "(1,2,3)", False),
    # matrices, vectors, complex numbers, text
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", False),
    ("\\begin{pmatrix}1\\\\-2\\end{pmatrix}", "(1,-2)", True), ("3+4i", "4i+3", True),
    ("3+4i", "3-4i", False), ("\\text{Monday}", "monday", True), ("\\text{(A)}", "B", False),
])
def test_equivalence(gold, pred, same):
    assert equal(f"The answer is $\\boxed{{{pred}}}$.", gold) is same


def test_gold_decides_the_kind():
    v = verify_math("\\boxed{(1, 2)}", "[1, 2]")
    assert v.kind == "interval" and v.reason == "not_equal"
    assert verify_math("\\boxed{1,000}", "0, 1").correct     # a list gold: 1,000 is 1 and 0
    assert verify_math("\\boxed{1,000}", "1000").correct


@pytest.mark.parametrize("data", [DATA, HELDOUT, NOTATIONS])
def test_every_gold_in_the_benchmark_equals_itself(data):
    golds = {json.loads(line)["gold"] for line in data.read_text().splitlines() if line}
    assert len(golds) > 90
    for gold in golds:
        v = verify_math(f"The answer is $\\boxed{{{gold}}}$.", gold)
        assert v.correct, (gold, v.steps)


@pytest.mark.parametrize("data,size", [(DATA, 300), (HELDOUT, 150), (NOTATIONS, 200)])
def test_labelled_set_is_well_formed_and_we_stay_accurate_on_it(data, size):
    pairs = [json.loads(line) for line in data.read_text().splitlines() if line]
    assert len(pairs) >= size
    assert all(set(p) - {"class"} == {"gold", "prediction", "label", "reason"} and p["reason"]
               for p in pairs)
    labels = [p["label"] for p in pairs]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    verdicts = verify_math_many([(p["prediction"], p["gold"]) for p in pairs], workers=2)
    wrong = [p for p, v in zip(pairs, verdicts) if v.correct != p["label"]]
    false_positives = [p for p in wrong if not p["label"]]
    assert len(wrong) <= 0.02 * len(pairs) and not false_positives, wrong


# ---------------------------------------------------------------------------------------------
# Bounds: never raises, never hangs

@pytest.mark.parametrize("completion,gold", [
    (None, "5"), (5, "5"), ("5", None), ("", ""), ("\\boxed{", "5"), ("}}}{{{", "{"),
    ("\\frac{1}{0}", "1"), ("$" * 1000, "5"), ("(" * 500 + "2" + ")" * 500, "1"),
    ("-" * 2000 + "1", "2"), ("\\sqrt{" * 300, "2"), ("x" * 100_000, "x"), ("9" * 5000, "9"),
    ("\\begin{pmatrix}1&2\\\\3\\end{pmatrix}", "1"), ("\\boxed{\\sqrt{[1,2]}}", "1"),
])
def test_bad_input_gets_a_verdict_that_says_why(completion, gold):
    v = verify_math(completion, gold)
    assert isinstance(v, MathVerdict) and not v.correct
    assert v.reason in ("no_answer", "unparsable", "not_equal")


def test_non_string_gold_is_read_as_text():
    assert equal("\\boxed{5}", 5) and equal("\\boxed{0.5}", 0.5)


@pytest.mark.parametrize("tower", ["5^{5^{5^5}}", "9^{9^{9^9}}", "999999!", "(10^{10})!",
                                   "x + 10^{10^{10}}", "2^{2^{2^{2^{2^{2}}}}}"])
def test_pathological_values_are_refused_quickly(tower):
    start = time.perf_counter()
    v = verify_math(f"\\boxed{{{tower}}}", "5", timeout_s=1.0)
    assert time.perf_counter() - start < 1.0 + MARGIN_S
    assert not v.correct and v.reason in ("unparsable", "timeout", "not_equal")


def test_identical_towers_are_equal_without_evaluating_them():
    assert equal("\\boxed{5^{5^{5^5}}}", "5^{5^{5^5}}")


def test_slow_sympy_job_times_out_and_the_worker_is_replaced():
    start = time.perf_counter()
    v = verify_math("\\boxed{x > 1}", SLOW_FOR_SYMPY, timeout_s=0.5)
    assert time.perf_counter() - start < 0.5 + MARGIN_S
    assert (v.correct, v.reason) == (False, "timeout")
    assert warm_up(1, wait_s=60) >= 1                         # the replacement comes up
    assert equal("\\boxed{-2<x<2}", "x^2<4")


def test_works_from_threads_within_the_time_bound():
    cases = [("\\boxed{\\frac{1}{2}}", "0.5", True), ("\\boxed{-2<x<2}", "x^2<4", True),
             ("\\boxed{(x+1)^2}", "x^2+2x+1", True), ("\\boxed{3}", "4", False),
             ("\\boxed{5^{5^{5^5}}}", "5", False), ("\\boxed{x>1}", SLOW_FOR_SYMPY, False)] * 4

    def timed(case):
        start = time.perf_counter()
        v = verify_math(case[0], case[1], timeout_s=1.0)
        return v, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(timed, cases))
    for (_, _, expected), (v, seconds) in zip(cases, results):
        assert seconds < 1.0 + MARGIN_S
        assert v.correct == expected or v.reason == "timeout"
    assert sum(v.correct for v, _ in results) >= 8       # the fast path never waits for sympy


def _many_in_child(pairs):
    return [v.correct for v in verify_math_many(pairs)]


def test_works_from_a_daemonic_worker_process():
    pairs = [("\\boxed{\\frac12}", "0.5"), ("\\boxed{-2<x<2}", "x^2<4"), ("\\boxed{3}", "4")]
    with multiprocessing.get_context("fork").Pool(1) as pool:      # forked: fresh worker pool
        assert pool.apply(_many_in_child, (pairs,)) == [True, True, False]


# ---------------------------------------------------------------------------------------------
# Batches and the TRL reward

def test_verify_math_many_keeps_input_order():
    pairs = [("\\boxed{3}", "3"), ("\\boxed{-2<x<2}", "x^2<4"), ("\\boxed{4}", "3"),
             ("\\boxed{[-2,2]}", "x^2 \\le 4"), ("no answer here", "1")]
    verdicts = verify_math_many(pairs, workers=2)
    assert [v.reason for v in verdicts] == ["equal", "equal", "not_equal", "equal", "no_answer"]


def test_math_reward_accepts_strings_and_conversations():
    completions = [
        "\\boxed{4}",
        [{"role": "assistant", "content": "The answer is 4."}],
        [{"role": "user", "content": "4?"}, {"role": "assistant", "content": "\\boxed{5}"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "#### 4"}]}],
    ]
    rewards = math_reward(["q"] * 4, completions, answer=["4"] * 4,
                          completion_ids=[[1]] * 4, trainer_state=None)
    assert rewards == [1.0, 1.0, 0.0, 1.0]
    assert all(isinstance(r, float) for r in rewards)


def test_math_reward_passes_verifier_options():
    assert math_reward(None, ["it is 4"], ["4"]) == [1.0]
    assert math_reward(None, ["it is 4"], ["4"], fallback_last_number=False) == [0.0]


def test_unknown_option_is_a_programming_error():
    with pytest.raises(TypeError):
        verify_math("1", "1", timeout=3)
