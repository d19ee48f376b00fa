"""Math answer verifier: extract -> normalise -> parse -> equivalence, bounded in time.

The reward for RL with verifiable rewards. ``verify_math(completion, gold)`` returns a MathVerdict
that says whether the completion's final answer equals the gold and *why*: what was extracted,
the normalised forms, the kind of object the gold is, and each step that decided it.

How it stays fast and bounded:

- the common case (integers, fractions, decimals, ``x = 5/3``) is decided in-process by exact
  rational arithmetic in tens of microseconds -- no sympy, no process;
- answers are parsed by our own small parser (never ``eval``, never ``sympy.parse_expr``), and
  exponent towers, huge factorials and huge integers are refused by size guards before anything
  is computed; constants and expressions are compared numerically with mpmath (50 digits; random
  positive points for variables);
- only what that cannot settle (non-linear inequalities, cancellation past 50 digits) goes to a
  persistent sympy worker process that is killed if it overruns its time (``_math_pool``);
- the in-process part is bounded too: extraction is linear in the completion, and one deadline
  per call (``_math_deadline``) is checked inside parsing and judging, so any input returns
  within ``timeout_s`` plus tens of milliseconds (an overrun is ``reason="timeout"``).

Conventions a grader may not share (each documented where it is decided): a decimal gold is
compared at the precision it is written with when it reads as a rounding, exactly when it reads
as exact (``0.5``: ``0.54`` is wrong), and an exact gold exactly unless ``allow_rounded=True``
(``_math_judge``'s precision policy); a ``%`` only in the prediction is read as a value or a unit
as the gold's size says; an equation between numbers must be true; a candidate after "not" /
"rather than" is never the answer; labels (``b=-3, c=0``, ``|AB|=1``) are set aside.

Known limits: answer variables are taken as positive reals (so ``\\sqrt{x^2}`` equals ``x``
unless the gold writes ``|x|``); calculus notation, set-builder notation and ``\\cases`` are
``unparsable``; several *different* answers offered together (``\\boxed{3} or \\boxed{4}``,
"3 or 4") count as hedging and score 0, while a box followed by more reasoning and a new box is
superseded by it (the last box counts).
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from verifiers._math_deadline import Overtime, deadline
from verifiers._math_extract import EXTRACTION, Extraction, extract_answer, last_boxes
from verifiers._math_judge import Judge, NeedSympy, TooLarge, kind_of, prepare
from verifiers._math_parse import ParseError, clean, looks_like_text, means_empty_set, \
    number_from_words, parse_answer, render, text_form, unwrap_text

__all__ = ["MathVerdict", "verify_math", "verify_math_many", "math_reward", "warm_up"]

DEFAULT_TIMEOUT_S = 2.0
_WEAK = ("answer_tag", "the_answer_is", "bare", "latex_delims")   # if these yield junk, try the next rule
_GOLD_EXTRACTION = ("boxed", "gsm8k")
_OPTIONS = ("timeout_s", "fallback_last_number", "extraction", "rel_tol", "allow_rounded")


@dataclass(frozen=True)
class MathVerdict:
    """Whether a completion's answer equals the gold, and the path that decided it.

    reason: ``equal`` | ``not_equal`` | ``hedged`` (several different answers) | ``no_answer`` |
    ``unparsable`` (includes values refused by the size guards) | ``timeout`` | ``error``.
    kind: what the gold is (integer, rational, decimal, number, expression, equation,
    inequality, interval, set, tuple, list, matrix, assignments, text), or None.
    steps: human-readable path, e.g. ("extracted '\\\\frac{1}{2}' from \\\\boxed{}",
    "normalised -> 1/2", "gold kind: rational", "exact rational compare: equal").
    """
    correct: bool
    score: float
    reason: str
    extracted: str | None
    gold_normalised: str | None
    pred_normalised: str | None
    kind: str | None
    steps: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class _Pending:
    """A pair the in-process judge could not settle: the sympy worker finishes it."""
    gold: tuple
    pred: tuple
    judge_options: dict
    fields: dict


@lru_cache(maxsize=8192)
def _parse(text: str, thousands: bool, gold: bool = True):
    """(tree, units) or (None, why); cached because golds and common answers repeat."""
    try:
        return parse_answer(text, thousands=thousands, gold=gold)
    except ParseError as exc:
        return None, str(exc)


def _verdict(reason: str, start: float, steps, correct: bool = False, **fields) -> MathVerdict:
    fields = {"extracted": None, "gold_normalised": None, "pred_normalised": None,
              "kind": None, **fields}
    return MathVerdict(correct=correct, score=1.0 if correct else 0.0, reason=reason,
                       steps=tuple(steps), seconds=time.perf_counter() - start, **fields)


def _gold_answer(gold: str, steps: list) -> str:
    found = extract_answer(gold, methods=_GOLD_EXTRACTION, fallback_last_number=False)
    if found.answer is not None:
        steps.append(f"gold: {found.describe()}")
        return found.answer
    return gold


_CHOICE_RE = re.compile(r"\s*\(\s*([A-Ea-e])\s*\)|\s*([A-Ea-e])\)(?=\s|$)")


_CLOCK_RE = re.compile(r"\d{1,2} \d\d(?: \d\d)?")                  # text_form of 3:45
_GOLD_CHOICE_RE = re.compile(r"\(?\s*[A-E]\s*\)?")
_TEXT_LABEL_RE = re.compile(r"[^=<>]{0,30}[A-Za-z][^=<>]{0,30}=(?!=)")


def _choice_letter(pred_text: str) -> str | None:
    """``(C)`` of ``(C) 12`` -- a choice with its value after it -- unless another choice follows
    (``(C) or (D)`` stays a hedge)."""
    pred_text = unwrap_text(pred_text)
    m = _CHOICE_RE.match(pred_text)
    if not m or _CHOICE_RE.search(pred_text, m.end()):
        return None
    return m.group(1) or m.group(2)


def _text_verdict(gold_text: str, pred_text: str, start, steps, extracted) -> MathVerdict:
    letter = _choice_letter(pred_text) if len(text_form(gold_text)) == 1 else None
    if letter and text_form(letter) != text_form(pred_text):
        steps.append(f"choice {letter!r} read from {pred_text!r}")
        pred_text = letter
    same = bool(text_form(gold_text)) and text_form(gold_text) == text_form(pred_text)
    if not same and _CLOCK_RE.fullmatch(text_form(gold_text)):    # 3:45 vs 3:45 PM
        pred_clock = re.sub(r"\s*\b(?:am|pm|a m|p m)$", "", text_form(pred_text))
        if pred_clock == text_form(gold_text):
            steps.append("am/pm after a clock time set aside (the gold gives none)")
            same = True
    if not same:                           # V_1:V_2=11:21 vs 11:21: a label on one side
        bare = [text_form(t[m.end():]) if (m := _TEXT_LABEL_RE.match(t)) else text_form(t)
                for t in (gold_text, pred_text)]
        if bare[0] and bare[0] == bare[1]:
            steps.append("a label before '=' set aside")
            gold_text, pred_text, same = bare[0], bare[1], True
    steps.append(f"text compare {text_form(gold_text)!r} vs {text_form(pred_text)!r}: "
                 f"{'equal' if same else 'not equal'}")
    return _verdict("equal" if same else "not_equal", start, steps, correct=same,
                    extracted=extracted, gold_normalised=text_form(gold_text),
                    pred_normalised=text_form(pred_text), kind="text")


def _last_sentence(text: str) -> str:
    """The completion's last sentence, for worded answers ("There is no solution.")."""
    text = text[-300:].strip().rstrip(".!")
    return re.split(r"[.!?\n]\s*", text)[-1].strip()


def _parts(gold_tree) -> tuple:
    """The items of a multi-part gold (a list, a set, or several assignments)."""
    return gold_tree[1] if gold_tree[0] in ("list", "assign") else \
        gold_tree[3] if gold_tree[0] == "seq" else ()


def _hedged(extraction: Extraction, pred_tree, thousands: bool, steps) -> bool:
    """Boxed answers offered alongside the last one (``hedge_group``) are a hedge unless they all
    mean the same thing; a box superseded by later reasoning is not counted."""
    for other in extraction.others:
        tree, _ = _parse(clean(other), thousands, False)
        judge = Judge()
        try:
            same = tree is not None and judge.judge(pred_tree, tree) == "equal"
        except (NeedSympy, TooLarge):
            same = False
        if not same:
            steps.append(f"another boxed answer {other!r} differs from the last one: hedged")
            return True
    return False


def _prepare_pair(completion, gold, start, *, fallback_last_number=True,
                  extraction=EXTRACTION, rel_tol=None, allow_rounded=False):
    """Everything up to the sympy worker: a MathVerdict, or a _Pending for the worker."""
    steps: list[str] = []
    if not isinstance(gold, str):
        gold = "" if gold is None else str(gold)
    if not isinstance(completion, str):
        return _verdict("no_answer", start, ["completion is not a string"])
    gold_text = clean(_gold_answer(gold, steps))
    if not gold_text:
        return _verdict("unparsable", start, steps + ["the gold is empty"])

    methods = tuple(extraction)
    while True:
        found = extract_answer(completion, methods=methods,
                               fallback_last_number=fallback_last_number)
        if found.answer is None and means_empty_set(_last_sentence(completion)):
            found = Extraction(_last_sentence(completion), "bare")    # "There is no solution."
        if found.answer is None:
            return _verdict("no_answer", start, steps + ["no answer found in the completion"])
        steps.append(found.describe())
        pred_text = clean(found.answer)
        for text, side in ((gold_text, "gold"), (pred_text, "prediction")):
            if means_empty_set(text):
                steps.append(f"{side} {text!r} read as the empty set")
        gold_text = "\\emptyset" if means_empty_set(gold_text) else gold_text
        pred_text = "\\emptyset" if means_empty_set(pred_text) else pred_text
        if _GOLD_CHOICE_RE.fullmatch(unwrap_text(gold_text)) and _choice_letter(pred_text):
            return _text_verdict(gold_text, pred_text, start, steps, found.answer)
        if looks_like_text(pred_text) and not looks_like_text(gold_text) and \
                (number := number_from_words(text_form(pred_text))) is not None:
            steps.append(f"number words read as {number}")
            pred_text = str(number)
        if looks_like_text(gold_text) or looks_like_text(pred_text):
            return _text_verdict(gold_text, pred_text, start, steps, found.answer)
        gold_tree, gold_units = _parse(gold_text, True)
        if gold_tree is None:
            steps.append(f"gold unparsable ({gold_units}): falling back to text")
            return _text_verdict(gold_text, pred_text, start, steps, found.answer)
        multi = prepare(gold_tree)[0] in ("list", "assign") or \
            gold_tree[0] == "seq" and gold_tree[1] == "{"
        # "1,000" and "1,22" are lists when the gold has several parts (not 1000 or 1.22)
        thousands = prepare(gold_tree)[0] not in ("list", "seq", "assign", "matrix")
        parts = len(_parts(prepare(gold_tree))) if multi else 1
        if multi and found.method == "boxed" and 1 + len(found.others) < parts and \
                (boxes := last_boxes(completion, parts)):    # x = \boxed{1} or x = \boxed{-2}
            found = Extraction(boxes[-1], "boxed", tuple(boxes[:-1]))
        if multi and found.others:                          # \boxed{2}, \boxed{3} for "2, 3"
            steps.append("gold has several values: the boxed answers are read together")
            found = Extraction(", ".join(found.others + (found.answer,)), found.method)
            pred_text = clean(found.answer)
        pred_tree, pred_units = _parse(pred_text, thousands, False)
        if pred_tree is not None or found.method not in _WEAK:
            break
        steps.append(f"unparsable ({pred_units}); trying the next rule")
        methods = methods[methods.index(found.method) + 1:]

    fields = {"extracted": found.answer, "gold_normalised": render(gold_tree),
              "kind": kind_of(prepare(gold_tree))}
    if pred_tree is None:
        return _verdict("unparsable", start, steps + [f"prediction unparsable: {pred_units}"],
                        **fields)
    fields["pred_normalised"] = render(pred_tree)
    steps.append(f"normalised -> {fields['pred_normalised']}"
                 + (f" (dropped units: {', '.join(pred_units)})" if pred_units else ""))
    steps.append(f"gold kind: {fields['kind']} ({fields['gold_normalised']})")
    if _hedged(found, pred_tree, thousands, steps):
        return _verdict("hedged", start, steps, **fields)
    judge_options = {"rel_tol": rel_tol, "allow_rounded": bool(allow_rounded)}
    judge = Judge(**judge_options)
    try:
        outcome = judge.judge(gold_tree, pred_tree)
    except TooLarge as exc:
        return _verdict("unparsable", start, steps + judge.steps + [f"guard: {exc}"], **fields)
    except NeedSympy as exc:
        steps += judge.steps + [f"in-process evidence not conclusive ({exc}): sympy worker"]
        return _Pending(gold_tree, pred_tree, judge_options, {"steps": steps, **fields})
    return _verdict(outcome, start, steps + judge.steps, correct=outcome == "equal", **fields)


def _finish(pending: _Pending, result, start) -> MathVerdict:
    fields = dict(pending.fields)
    steps = fields.pop("steps")
    if result[0] == "ok":
        outcome = result[1]
        return _verdict(outcome, start, steps + list(result[2]), correct=outcome == "equal",
                        **fields)
    if result[0] == "timeout":
        return _verdict("timeout", start, steps + [result[1]], **fields)
    return _verdict("error", start, steps + list(result[2]) + [result[1]], **fields)


def _safe(fn, start, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Overtime as exc:
        return _verdict("timeout", start, [str(exc)])
    except Exception as exc:           # noqa: BLE001 - the verifier never raises on input
        return _verdict("error", start, [f"internal error: {type(exc).__name__}: {exc}"])


def _split_options(options):
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {_OPTIONS}")
    timeout_s = float(options.pop("timeout_s", DEFAULT_TIMEOUT_S))
    return timeout_s, options


def verify_math(completion: str, gold: str, **options) -> MathVerdict:
    """Is the final answer in ``completion`` mathematically equal to ``gold``?

    completion: model output (any text); gold: the reference answer (``"\\frac{1}{2}"``,
    ``"72"``, a GSM8K solution ending in ``#### 72``, ``"(-\\infty, 2]"``, ...).
    Options (keyword only):
      timeout_s=2.0             wall-clock bound for the whole call, from any thread;
      fallback_last_number=True if no rule finds an answer, take the last number in the text;
      extraction=EXTRACTION     rules tried in order: "boxed", "answer_tag", "the_answer_is",
                                "gsm8k", "bare" (whole completion), "latex_delims", "last_number";
      rel_tol=None              also accept decimals within this relative error of the gold;
                                by default a decimal gold is compared at the precision written
                                (gold 3.14 accepts 3.14159, not 3.1; gold 0.5 is exact and
                                does not accept 0.54) and an exact gold exactly;
      allow_rounded=False       an exact gold with no finite decimal (600/7) also accepts its
                                rounding at the places written (85.71): for questions that
                                ask for a decimal. See the precision policy in _math_judge.
    Never raises on any string input; a bad input gets a verdict whose reason says why.
    The first call that needs sympy in a process may return ``timeout`` while its worker
    starts (~1 s); call ``warm_up()`` first, or use verify_math_many, which waits for it.
    """
    start = time.perf_counter()
    timeout_s, options = _split_options(dict(options))
    with deadline(start + timeout_s):
        prepared = _safe(_prepare_pair, start, completion, gold, start, **options)
    if isinstance(prepared, MathVerdict):
        return prepared
    from verifiers._math_pool import get_pool
    remaining = timeout_s - (time.perf_counter() - start)
    result = get_pool().run((prepared.gold, prepared.pred, prepared.judge_options),
                            max(remaining, 0))
    return _safe(_finish, start, prepared, result, start)


def verify_math_many(pairs, workers: int | None = None, **options) -> list[MathVerdict]:
    """verify_math over (completion, gold) pairs; results in input order.

    Everything the in-process path settles is done first, in this process (microseconds each);
    the rest runs on ``workers`` sympy worker processes in parallel (default 2). Unlike a single
    call, a batch waits for its workers to start, so a cold start does not turn into timeouts.
    """
    timeout_s, options = _split_options(dict(options))
    out: list = []
    pending = []
    for k, (completion, gold) in enumerate(pairs):
        start = time.perf_counter()
        with deadline(start + timeout_s):
            prepared = _safe(_prepare_pair, start, completion, gold, start, **options)
        out.append(prepared)
        if isinstance(prepared, _Pending):
            pending.append((k, prepared, time.perf_counter() - start))
    if not pending:
        return out
    from verifiers._math_pool import get_pool
    pool = get_pool()
    workers = max(1, workers or 2)
    pool.warm(min(workers, len(pending)))

    def finish(item):
        k, prepared, spent = item
        start = time.perf_counter() - spent
        result = pool.run((prepared.gold, prepared.pred, prepared.judge_options),
                          max(timeout_s - spent, 0))
        out[k] = _safe(_finish, start, prepared, result, start)

    with ThreadPoolExecutor(max_workers=min(workers, len(pending))) as executor:
        list(executor.map(finish, pending))
    return out


def _completion_text(completion) -> str:
    """Text of a completion: a string, or TRL's conversational [{"role", "content"}, ...]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion:
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        content = (assistant or messages or [{}])[-1].get("content", "")
        if isinstance(content, list):                  # [{"type": "text", "text": ...}]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content if isinstance(content, str) else ""
    return ""


def math_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """TRL-compatible reward: 1.0 where the completion's answer equals ``answer``, else 0.0.

    completions: strings or conversational message lists; answer: one gold per completion
    (TRL passes the dataset column) or a single gold for all. Verifier options (timeout_s,
    fallback_last_number, extraction, rel_tol, allow_rounded) may be passed as keywords; TRL's own keywords
    (completion_ids, trainer_state, ...) are ignored.
    """
    options = {name: kwargs[name] for name in _OPTIONS if name in kwargs}
    texts = [_completion_text(c) for c in completions]
    golds = list(answer) if isinstance(answer, (list, tuple)) else [answer] * len(texts)
    return [v.score for v in verify_math_many(zip(texts, golds), **options)]


def warm_up(workers: int = 1, wait_s: float = 60.0) -> int:
    """Start the sympy workers now (optional), so the first hard answer does not wait for one."""
    from verifiers._math_pool import get_pool
    return get_pool().warm(workers, wait_s)
