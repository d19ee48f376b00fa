"""Properties of verifiers.math: any string gets a verdict in time, every answer equals itself in
its other spellings, and a fixed wrong answer is never accepted.

Elapsed time is measured by hand (``deadline=None``): hypothesis deadlines are per example and
flaky on a loaded 2-core machine; our bound is the verifier's own timeout plus a margin.
"""
from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from verifiers import MathVerdict, verify_math
from verifiers.math import warm_up

TIMEOUT_S = 1.0
MARGIN_S = 0.5
PROPS = settings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])

# Pieces a hostile or broken completion is made of.
LATEX_ATOMS = [
    "\\frac", "\\dfrac", "\\sqrt", "{", "}", "(", ")", "[", "]", "^", "_", "-", "+", "*", "/",
    "=", "<", "\\le", ",", "x", "y", "e", "i", "\\pi", "\\infty", "0", "1", "7", "10", "0.5",
    "\\boxed{", "\\fbox{", "\\text{", " or ", " and ", "$", "\\$", "%", "\\%", "^\\circ", "!",
    "|", "\\left(", "\\right)", "\\{", "\\}", "\\cup", "\\pm", "\\begin{pmatrix}",
    "\\end{pmatrix}", "&", "\\\\", "\\sin", "\\log_", " ", "\n", "####", "<answer>", "</answer>",
    "the answer is ", "1,000", "\\mathbb{R}", "\\mid", "\\binom", "\\lfloor", "\\rfloor",
    "\\overline{3}", "9^{9^{9^9}}", "999999!", "2^{2^{2^{2^{2^2}}}}", "10^{10^{10}}", "1e400",
    "\\operatorname{", "sqrt(", "oo", "\\cdot", "\\times", "\\div", "words", "é", "\x00",
]
GOLDS = ["5", "\\frac{1}{2}", "x^2+1", "(1,2)", "[0,1)", "\\{1,2\\}", "x>2", "y=2x+1", "3.14",
         "50\\%", "\\text{(C)}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "2, 3", "\\sqrt{2}",
         "1+i", "x^2<4"]
latex_soup = st.lists(st.sampled_from(LATEX_ATOMS), min_size=1, max_size=40).map("".join)


@pytest.fixture(scope="module", autouse=True)
def sympy_worker():
    assert warm_up(1) >= 1


def timed(completion, gold) -> MathVerdict:
    start = time.perf_counter()
    verdict = verify_math(completion, gold, timeout_s=TIMEOUT_S)
    elapsed = time.perf_counter() - start
    assert isinstance(verdict, MathVerdict)
    assert elapsed < TIMEOUT_S + MARGIN_S, (completion, gold, elapsed)
    assert verdict.score == float(verdict.correct)
    return verdict


# ---------------------------------------------------------------------------------------------
# Any input: a verdict, within the bound

@PROPS
@given(completion=st.text(max_size=300), gold=st.sampled_from(GOLDS) | st.text(max_size=30))
def test_arbitrary_text_gets_a_verdict_in_time(completion, gold):
    timed(completion, gold)


@PROPS
@given(completion=latex_soup, gold=st.sampled_from(GOLDS) | latex_soup)
def test_adversarial_latex_gets_a_verdict_in_time(completion, gold):
    timed(completion, gold)


# ---------------------------------------------------------------------------------------------
# Every answer equals itself in its other spellings

def spellings(value: Fraction) -> list[str]:
    """Ways a model or a dataset writes one rational number."""
    p, q = value.numerator, value.denominator
    sign, a = ("-" if p < 0 else ""), abs(p)
    out = [f"{sign}\\frac{{{a}}}{{{q}}}", f"{sign}\\dfrac{{{a}}}{{{q}}}", f"{p}/{q}",
           f"\\frac{{{p}}}{{{q}}}", f"\\left({sign}\\frac{{{a}}}{{{q}}}\\right)",
           f"x = {sign}\\tfrac{{{a}}}{{{q}}}", f"\\frac{{{2 * p}}}{{{2 * q}}}"]
    if q == 1:
        out += [str(p), f"{p}.0", f"{p:,}"]
    if a < 10 and q < 10:
        out.append(f"{sign}\\dfrac{a}{q}")                  # \dfrac12
    if q > 1 and a > q:                                     # mixed number
        out.append(f"{sign}{a // q}\\frac{{{a % q}}}{{{q}}}" if a % q else f"{p // q}")
    places = next((n for n in range(12) if (value * 10 ** n).denominator == 1), None)
    if places:                                              # terminating decimal, exactly
        digits = str(abs(value * 10 ** places).numerator).rjust(places + 1, "0")
        out.append(f"{sign}{digits[:-places]}.{digits[-places:]}")
    return out


fractions = st.fractions(min_value=-1000, max_value=1000, max_denominator=64)
wrappers = st.sampled_from(["{a}", "\\boxed{{{a}}}", "The answer is ${a}$.",
                            "Final Answer: The final answer is ${a}$.", "#### {a}",
                            "<answer>{a}</answer>"])


@PROPS
@given(value=fractions, data=st.data(), wrapper=wrappers)
def test_every_rational_equals_itself_in_other_spellings(value, data, wrapper):
    forms = spellings(value)
    gold = data.draw(st.sampled_from(forms), label="gold")
    pred = data.draw(st.sampled_from(forms), label="prediction")
    verdict = timed(wrapper.format(a=pred), gold)
    assert verdict.correct, (gold, pred, verdict.steps)


@PROPS
@given(a=st.integers(-9, 9), b=st.integers(-9, 9), wrapper=wrappers)
def test_a_polynomial_equals_its_factored_form(a, b, wrapper):
    expanded = f"x^2 + {a + b}x + {a * b}".replace("+ -", "- ")
    factored = f"(x + {a})(x + {b})".replace("+ -", "- ")
    assert timed(wrapper.format(a=factored), expanded).correct


@PROPS
@given(lo=st.integers(-50, 50), width=st.integers(1, 50), closed=st.tuples(st.booleans(),
                                                                            st.booleans()))
def test_an_interval_equals_its_inequality(lo, width, closed):
    hi = lo + width
    left, right = ("[" if closed[0] else "("), ("]" if closed[1] else ")")
    ops = [r"\le" if c else "<" for c in closed]
    interval = f"{left}{lo}, {hi}{right}"
    assert timed(f"\\boxed{{{lo} {ops[0]} x {ops[1]} {hi}}}", interval).correct
    flipped = f"{'(' if closed[0] else '['}{lo}, {hi}{right}"
    assert not timed(f"\\boxed{{{flipped}}}", interval).correct      # open vs closed matters


# ---------------------------------------------------------------------------------------------
# A fixed wrong answer is never accepted

@PROPS
@given(value=fractions, delta=fractions.filter(lambda d: d != 0), data=st.data(),
       wrapper=wrappers)
def test_a_different_number_is_never_accepted(value, delta, data, wrapper):
    gold = data.draw(st.sampled_from(spellings(value)), label="gold")
    pred = data.draw(st.sampled_from(spellings(value + delta)), label="prediction")
    verdict = timed(wrapper.format(a=pred), gold)
    assert not verdict.correct, (gold, pred, verdict.steps)


@PROPS
@given(value=fractions, data=st.data(), wrapper=wrappers)
def test_sign_errors_and_reciprocals_are_never_accepted(value, data, wrapper):
    assume(value not in (0, 1, -1))
    gold = data.draw(st.sampled_from(spellings(value)), label="gold")
    wrong = data.draw(st.sampled_from([-value, 1 / value, value * 100, value / 100]))
    pred = data.draw(st.sampled_from(spellings(wrong)), label="prediction")
    assert not timed(wrapper.format(a=pred), gold).correct


@PROPS
@given(k=st.integers(2, 50), wrapper=wrappers)
def test_a_missing_radical_is_never_accepted(k, wrapper):
    assume(int(k ** 0.5) ** 2 != k)
    assert timed(wrapper.format(a=f"4\\sqrt{{{k}}}"), f"4\\sqrt{{{k}}}").correct
    assert not timed(wrapper.format(a="4"), f"4\\sqrt{{{k}}}").correct
    assert not timed(wrapper.format(a=f"4\\sqrt{{{k}}}"), "4").correct
