"""Pull the final answer out of a completion: \\boxed{}, <answer>, "the answer is", #### ...

Every rule is a linear scan (str.rfind, one brace-matching pass, or a regex without nested
quantifiers), so a hostile completion costs time in proportion to its length, and only its last
MAX_COMPLETION_CHARS count. A candidate written right after a negation ("10, not 9") is skipped by
every rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers._math_parse import number_from_words

MAX_COMPLETION_CHARS = 20_000   # answers sit at the end; a longer completion is cut from the front
EXTRACTION = ("boxed", "answer_tag", "the_answer_is", "gsm8k", "bare", "latex_delims",
              "last_number")
_DESCRIBE = {"boxed": "\\boxed{}", "answer_tag": "<answer> tags", "the_answer_is": "'the answer is'",
             "gsm8k": "'####'", "bare": "the whole completion", "latex_delims": "the last $...$",
             "last_number": "the last number (fallback)"}

_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.S)       # an escaped pair, or a brace
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*")
_ANSWER_IS_RE = re.compile(r"(?:final\s+answer|\banswer)\*{0,2}\s*(?:is\b|:|=)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\w.])(?:\d{1,2}:\d{2}(?::\d{2})?(?![\d:])"     # a clock time 3:45
                        r"|-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?)(?![\w])")
_OR_RE = re.compile(r"\s*(?:or|and/or|\\text\{\s*or\s*\})\s*$")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")
_PROSE_RE = re.compile(r"[A-Za-z]{2,}[\s,]+[A-Za-z]{2,}")
_DELIMS_RE = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)
_LATEX_WORD_RE = re.compile(r"\\[a-zA-Z]+|\\text\w*\s*\{[^{}]*\}")
# A candidate written right after a negation is rejected, not offered: "5, not 6", "4 rather
# than 3", "\\boxed{8}, not \\boxed{12}", "x = 3, not x = 2". Matched on the text just before it.
_NEGATED_RE = re.compile(r"(?:\bnot|\brather\s+than|\binstead\s+of|\\neq?)\s*(?:\$|\\\(|\()?\s*"
                         r"(?:\\boxed\s*\{\s*)?(?:[A-Za-z](?:_\{?\w+\}?)?\s*=\s*)?$", re.I)
_NEGATION_RE = re.compile(r",?\s*(?:\b(?:and|but)\s+)?(?:\bnot\b|\brather\s+than\b|"
                          r"\binstead\s+of\b)", re.I)


def _negated(text: str, start: int) -> bool:
    """True if the candidate starting at text[start] follows a negation ("..., not 6")."""
    return bool(_NEGATED_RE.search(text[max(0, start - 40):start]))


@dataclass(frozen=True)
class Extraction:
    """What was found: the answer text, the rule that found it, other distinct boxed answers."""
    answer: str | None
    method: str | None
    others: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"extracted {self.answer!r} from {_DESCRIBE[self.method]}"


def brace_matches(text: str, start: int = 0) -> dict[int, int]:
    """{index of "{": index of its "}"} for every group that closes, in one pass from start.

    One stack scan instead of a scan per group, so a completion full of unclosed ``\\boxed{``
    costs time in proportion to its length (a backslash escapes the character after it).
    """
    out, stack = {}, []
    for m in _BRACE_TOKEN_RE.finditer(text, start):
        if m.group() == "{":
            stack.append(m.start())
        elif m.group() == "}" and stack:
            out[stack.pop()] = m.start()
    return out


def boxed_spans(text: str) -> list[tuple[str, int, int]]:
    """(content, start, end) of every outermost \\boxed{...} / \\fbox{...}, in order."""
    out, covered, matches = [], -1, None
    for m in _BOX_RE.finditer(text):
        if m.start() < covered:
            continue                                   # inside an earlier box
        if _negated(text, m.start()):
            continue                                   # "\\boxed{8}, not \\boxed{12}"
        j = m.end()
        if j < len(text) and text[j] == "{":
            if matches is None:                        # braces before the first box
                matches = brace_matches(text, j)       # cannot change the pairs after it
            if j not in matches:
                continue                               # truncated completion
            content, covered = text[j + 1:matches[j]], matches[j] + 1
        else:                                          # \boxed 5
            token = re.match(r"[^\s$]+", text[j:j + 50])
            if not token:
                continue
            content, covered = token.group(), j + token.end()
        out.append((content.strip(), m.start(), covered))
    return out


_CORRECTION_RE = re.compile(r"\b(?:wait|actually|but|no|not|instead|mistake|wrong|oops|correct"
                            r"|rather|hmm|recheck|however|sorry|fix)", re.I)


def last_boxes(text: str, count: int) -> list[str] | None:
    """The last ``count`` boxed answers if they sit close together (each root or part boxed
    on its own: ``x = \\boxed{1}`` or ``x = \\boxed{-2}``), else None."""
    spans = boxed_spans(text[-MAX_COMPLETION_CHARS:])[-count:]
    if len(spans) < count:
        return None
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        gap = text[-MAX_COMPLETION_CHARS:][end:start]
        if len(gap) > 80 or "\n\n" in gap or _CORRECTION_RE.search(gap):
            return None                                # "\\boxed{1}, wait, \\boxed{-2}": superseded
    return [content for content, _, _ in spans]


def boxed_answers(text: str) -> list[str]:
    """Contents of every outermost \\boxed{...} / \\fbox{...}, in order (nested ones skipped)."""
    return [content for content, _, _ in boxed_spans(text)]


# between two boxes offered as alternatives: only connectors ("or", ",", "\text{ or }", "$ $")
_CONNECTOR_RE = re.compile(r"(?:[\s$,;/&.]|\\[,;!: ]|\\(?:text|mathrm|textbf)\s*\{\s*(?:(?:or|and|either)\s*)?\}"
                           r"|\\quad|\\qquad|\b(?:or|and|either|maybe|possibly)\b)*", re.I)


def hedge_group(text: str) -> list[str]:
    """The boxed answers offered together with the last one: earlier boxes joined to it by
    connectors only (``\\boxed{3} or \\boxed{4}``). A box followed by more words -- a correction,
    "which is", a new sentence of reasoning -- is superseded by the later box, not a hedge."""
    spans = boxed_spans(text)
    group = spans[-1:]
    for content, start, end in reversed(spans[:-1]):
        gap = text[end:group[0][1]]
        if not _CONNECTOR_RE.fullmatch(gap):
            break
        group.insert(0, (content, start, end))
    return [content for content, _, _ in group]


def _answer_tag(text: str):
    start = text.rfind("<answer>")
    if start < 0:
        return None
    end = text.find("</answer>", start)
    return text[start + 8:end if end >= 0 else len(text)].strip() or None


def _the_answer_is(text: str):
    last = None
    for last in _ANSWER_IS_RE.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end():].lstrip(" \t*:")
    if rest.startswith("\n"):                          # "Final answer:\n\n$$5$$"
        rest = rest.lstrip()
    cut = _SENTENCE_END_RE.search(rest)
    phrase = rest[:cut.start()] if cut else rest
    negation = _NEGATION_RE.search(phrase)                # "5, not 6": the rejected one goes
    phrase = phrase[:negation.start()] if negation else phrase
    phrase = phrase.strip(" \t*:.,")
    return phrase[:300] or None


def _gsm8k(text: str):
    start = text.rfind("####")
    if start < 0:
        return None
    line = text[start + 4:].strip().split("\n", 1)[0].strip()
    return line or None


def _is_bare(text: str) -> bool:
    """A short completion that is only an answer ("42", "$\\frac12$", "x = 3", "5 cm")."""
    text = text.strip()
    if len(text) > 200 or "\n" in text:
        return False
    if number_from_words(text.rstrip(".")) is not None:
        return True                                    # "forty two", "one hundred and five"
    math = _DELIMS_RE.findall(text)
    if math and _DELIMS_RE.sub("", text).strip(" .,;:"):
        return False                                   # prose around a $...$ segment
    return not _PROSE_RE.search(_LATEX_WORD_RE.sub(" ", text))


def _latex_delims(text: str):
    """The content of the math segment that ends last: $...$, $$...$$, \\(...\\), \\[...\\], or a
    matrix environment written in running text without delimiters."""
    best_end, best = -1, None
    end = text.rfind("\\end{")
    env = _MATRIX_END_RE.match(text, end) if end >= 0 else None
    start = text.rfind(f"\\begin{{{env.group(1)}}}", 0, end) if env else -1
    if start >= 0:
        best_end, best = end, text[start:env.end()]
    for open_, close in (("\\(", "\\)"), ("\\[", "\\]")):
        end = text.rfind(close)
        start = text.rfind(open_, 0, end) if end >= 0 else -1
        if start >= 0 and end > best_end:
            best_end, best = end, text[start + 2:end]
    segments = [seg for seg in _dollar_segments(text) if not _negated(text, seg[0])]
    if segments and segments[-1][1] > best_end:
        best = text[segments[-1][0]:segments[-1][1]]
    return best.strip() if best and best.strip() else None


_MATRIX_END_RE = re.compile(r"\\end\{([pbvBV]?matrix)\}")


def _dollar_segments(text: str):
    """(start, end) of $...$ and $$...$$ maths, paired the way pandoc does it.

    An opening $ must be followed by a non-space, a closing $ preceded by a non-space and not
    followed by a digit, so money ("I paid $5 and $10") is not read as maths. Linear: once no
    valid closing $ is left, none can follow.
    """
    out, k, n = [], 0, len(text)
    while (k := text.find("$", k)) >= 0:
        if k and text[k - 1] == "\\":
            k += 1
            continue
        if text.startswith("$$", k):
            end = text.find("$$", k + 2)
            if end < 0:
                break
            out.append((k + 2, end))
            k = end + 2
            continue
        start = k + 1
        if start >= n or text[start].isspace() or text[start] == "$":
            k = start
            continue
        j = start
        while (j := text.find("$", j)) >= 0 and (
                text[j - 1] in " \t\n\\" or j + 1 < n and text[j + 1].isdigit()):
            j += 1
        if j < 0:
            break
        out.append((start, j))
        k = j + 1
    return out


def _last_number(text: str):
    matches = list(_NUMBER_RE.finditer(text))
    while matches and _negated(text, matches[-1].start()):
        matches.pop()                                  # "10, not 9": 9 is rejected
    if not matches:
        return None
    last = matches[-1]
    if len(matches) > 1 and _OR_RE.fullmatch(text[matches[-2].end():last.start()] + ""):
        return text[matches[-2].start():last.end()]    # "3 or 4" stays a hedge
    return last.group()


def extract_answer(text: str, *, methods=EXTRACTION, fallback_last_number: bool = True
                   ) -> Extraction:
    """The final answer in a completion, by the first rule in ``methods`` that finds one."""
    text = text[-MAX_COMPLETION_CHARS:]
    for method in methods:
        if method == "last_number" and not fallback_last_number:
            continue
        others = ()
        if method == "boxed":
            boxes = hedge_group(text)                  # the last box and any offered with it
            answer = boxes[-1] if boxes else None
            others = tuple(dict.fromkeys(b for b in boxes[:-1] if b != answer))
        elif method == "answer_tag":
            answer = _answer_tag(text)
            if answer is not None and not _is_bare(answer):
                inner = extract_answer(answer, methods=[m for m in methods if m not in (
                    "boxed", "answer_tag")], fallback_last_number=fallback_last_number)
                answer = inner.answer
        elif method == "the_answer_is":
            answer = _the_answer_is(text)
        elif method == "gsm8k":
            answer = _gsm8k(text)
        elif method == "bare":
            answer = text.strip() if _is_bare(text) and text.strip() else None
        elif method == "latex_delims":
            answer = _latex_delims(text)
        elif method == "last_number":
            answer = _last_number(text)
        else:
            raise ValueError(f"unknown extraction method {method!r}")
        if answer:
            return Extraction(answer, method, others)
    return Extraction(None, None)
