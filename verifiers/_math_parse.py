"""Answer text (LaTeX or plain) -> a small tuple tree, without eval and without sympy.

Our own recursive-descent parser, so that untrusted model output never reaches ``eval`` or
``sympy.parse_expr`` and its cost is bounded by the length of the answer (capped below) and a
nesting limit. The tree is made of plain tuples, so it pickles to a worker and hashes for caches:

    ('num', Fraction, places)    places = decimals written (None for integers, fractions)
    ('sym', name)  ('const', 'pi' | 'e' | 'i' | 'oo')
    ('add', terms)  ('mul', factors)  ('div', a, b)  ('neg', a)  ('pow', a, b)  ('root', a, n)
    ('fn', name, args)  ('fact', a)  ('pct', a)  ('deg', a)  ('pm', a, b)   a ± b
    ('eq', parts)  ('rel', parts, ops)  ('in', a, b)        x = 3, 1 < x <= 2, x ∈ [0, 1]
    ('list', items, joined)          bare "2, 3", "2 or 3", "x > 1 and x < 2": joined is , or and
    ('seq', open, close, items)      (1, 2)  [1, 2)  \\{1, 2\\}  \\langle 1, 2 \\rangle
    ('union', parts)  ('setminus', a, b)  ('matrix', rows)  ('empty',)  ('reals',)  ('text', words)
    a ratio a:b is read as ('div', a, b); 1,22 is a decimal comma unless the gold is a list

What it does not cover: calculus notation, set-builder notation, \\cases, primes, and anything
outside an answer line; those raise ParseError and the verdict says ``unparsable``.
"""
from __future__ import annotations

import re
from fractions import Fraction

MAX_ANSWER_CHARS = 1000      # an answer longer than this is not an answer
MAX_DEPTH = 40               # brackets, signs and exponents nested deeper than this are refused
MAX_DIGITS = 2000            # digits in one literal


class ParseError(ValueError):
    """The answer is not something this parser understands (the verdict says ``unparsable``)."""


# ---------------------------------------------------------------------------------------------
# Text-level clean-up: spellings that mean nothing mathematically.

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": r"\times ", "\u22c5": r"\cdot ",
    "\u00b7": r"\cdot ", "\u00f7": r"\div ", "\u221a": r"\sqrt", "\u03c0": r"\pi ",
    "\u221e": r"\infty ", "\u2264": r"\le ", "\u2265": r"\ge ", "\u2260": r"\ne ",
    "\u00b1": r"\pm ", "\u00b0": r"^\circ ", "\u222a": r"\cup ", "\u2208": r"\in ",
    "\u2205": r"\emptyset ", "\u2248": r"\approx ", "\u00b2": "^2", "\u00b3": "^3",
    "\u00bd": r"\frac{1}{2}", "\u00bc": r"\frac{1}{4}", "\u00be": r"\frac{3}{4}",
    "\u2153": r"\frac{1}{3}", "\u2154": r"\frac{2}{3}", "\u2192": r"\to ", "\u2032": "'", "\u2033": "''", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_SIZING_RE = re.compile(r"\\(?:left|right|[bB]igg?[lrm]?)(?![a-zA-Z])\s*\.?")
_DIGIT_SPACE_RE = re.compile(r"(?<=\d)(?:\\[,;:!]|\{,\}|\\ |~)(?=\d{3}(?!\d))")
_SPACE_RE = re.compile(r"(?<!\\)\\[,;:> ]|\\q?quad(?![a-zA-Z])|~")
_DROP_RE = re.compile(r"(?<!\\)\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits|mathstrut|!)"
                      r"(?![a-zA-Z])|\\\$|\$|\\\(|\\\)|\\\[|\\\]")
_FRAC_RE = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_DECIMAL_COMMA_RE = re.compile(r"(?<=\d)\{,\}(?=\d)")              # 0{,}75: LaTeX decimal comma
_SPACED_THOUSANDS_RE = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?![\d/.,])")   # 1 250 000
_CHOOSE_RE = re.compile(r"\{\s*([^{}]+?)\s*\\choose\s*([^{}]+?)\s*\}|^([^{}]+?)\s*\\choose\s*([^{}]+?)$")
_C_NK_RE = re.compile(r"(?<![A-Za-z\\])C\s*\(\s*(\d{1,4})\s*,\s*(\d{1,4})\s*\)")   # C(7, 3)
_ORDINAL = (r"(?:\\(?:mathrm|text|textrm|textnormal)\s*\{\s*(?:st|nd|rd|th)\s*\}|"
            r"(?:\\rm\s*)?(?:st|nd|rd|th)(?![a-zA-Z]))")
_ORDINAL_RE = re.compile(r"(?<=\d)\s*\^\s*(?:\{\s*" + _ORDINAL + r"\s*\}|" + _ORDINAL + ")")
_DEG_MIN_RE = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*(?:\{\s*\\circ\s*\}|\\circ)\s*(\d+(?:\.\d+)?)\s*"
                         r"(?:'|\^\s*\{?\s*\\prime\s*\}?)(?:\s*(\d+(?:\.\d+)?)\s*(?:''|\"))?")
_BINOM_RE = re.compile(r"\\[dt]binom(?![a-zA-Z])")


def clean(text: str) -> str:
    """Remove what only affects typesetting: $ delimiters, \\left, spacing, \\dfrac -> \\frac.

    ``1\\,000`` and ``1{,}000`` become ``1000`` (a thin space between digit groups is a
    thousands separator), a trailing full stop goes. A text far longer than any answer the
    parser takes is only stripped (it will be refused as too long; no rewrite runs on it).
    """
    if len(text) > 4 * MAX_ANSWER_CHARS:
        return text.strip()
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], text)
    s = _SIZING_RE.sub("", s)
    s = _DIGIT_SPACE_RE.sub("", s)
    s = _DROP_RE.sub("", s)
    s = _SPACE_RE.sub(" ", s)
    s = _FRAC_RE.sub(r"\\frac", s)
    s = _BINOM_RE.sub(r"\\binom", s)
    if "{,}" in s:
        s = _DECIMAL_COMMA_RE.sub(",", s)
    if " " in s:
        s = _SPACED_THOUSANDS_RE.sub(lambda m: m.group().replace(" ", ""), s)
    if "C" in s:
        s = _C_NK_RE.sub(r"\\binom{\1}{\2}", s)
    if "choose" in s:
        s = _CHOOSE_RE.sub(lambda m: "\\binom{%s}{%s}" % (
            (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))), s)
    if "^" in s:
        s = _ORDINAL_RE.sub("", s)                                   # 12^{\mathrm{th}} -> 12
        s = _DEG_MIN_RE.sub(_degrees_minutes, s)                      # 60^\circ 42' -> 60.7 deg
    s = s.strip()
    end = len(s)                     # trailing ",", ";" and a full stop (not ".."), linearly
    while end and (s[end - 1] in ",;" or s[end - 1] == "." and s[max(end - 2, 0):end] != ".."):
        end -= 1
        while end and s[end - 1].isspace():
            end -= 1
    return s[:end]


def _degrees_minutes(m) -> str:
    """60^\\circ 42' (and 10'' seconds) as one angle in degrees."""
    seconds = f"+\\frac{{{m.group(3)}}}{{3600}}" if m.group(3) else ""
    return f"({m.group(1)}+\\frac{{{m.group(2)}}}{{60}}{seconds})^\\circ"


# ---------------------------------------------------------------------------------------------
# Text answers ("Monday", "(C)", "\text{even}"): compared as words, not parsed.

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|"
                          r"emph|textsf|mathsf|mathit|operatorname)\s*\{([^{}]*)\}")
_CHOICE_RE = re.compile(r"^\(?([A-Ea-e])\)?$")
_MATH_WORDS = {"sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "pi", "or",
               "and", "infty", "inf", "infinity", "arcsin", "arccos", "arctan", "frac", "abs"}


def text_form(s: str) -> str:
    """Lower-case words of an answer with markup and punctuation removed (for text answers)."""
    s = _TEXT_CMD_RE.sub(r" \1 ", s)
    s = re.sub(r"\\[a-zA-Z]+|[{}()\[\].,:;!?'\"$*]", " ", s)
    return " ".join(s.lower().split())


def unwrap_text(s: str) -> str:
    """The answer with \\text{...}-like wrappers replaced by their content."""
    return _TEXT_CMD_RE.sub(r" \1 ", s).strip()


_NO_SOLUTION = {"no solution", "no solutions", "no real solution", "no real solutions",
                "there is no solution", "there are no solutions", "there are no real solutions",
                "no real roots", "no roots", "none", "empty set", "the empty set", "no such x",
                "the solution set is empty", "no value", "no values", "no real values"}


def means_empty_set(s: str) -> bool:
    """True for the worded empty set: "no solution", "\\text{no real solutions}", "none"."""
    low = s.lower()
    return ("no" in low or "empty" in low) and text_form(s) in _NO_SOLUTION


def looks_like_text(s: str) -> bool:
    """True for word answers: no digits, and a word that is not maths, or a choice like (C)."""
    inner = _TEXT_CMD_RE.sub(r" \1 ", s).strip()
    if inner.startswith("(") and _CHOICE_RE.match(inner.replace(" ", "")):
        return True
    if any(_digit(c) for c in inner) or re.search(r"[=<>^_+*/|]|\\[a-zA-Z]", inner):
        return False
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", inner)]
    return any(len(w) >= 3 and w not in _MATH_WORDS or w in ("no", "na") for w in words)


# ---------------------------------------------------------------------------------------------
# The parser.

_FUNCS = {  # name written -> canonical name
    "sin": "sin", "cos": "cos", "tan": "tan", "cot": "cot", "sec": "sec", "csc": "csc",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "asin": "asin", "acos": "acos",
    "atan": "atan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "ln": "log", "log": "log",
    "exp": "exp", "abs": "abs", "floor": "floor", "ceil": "ceil", "sqrt": "sqrt",
    "max": "max", "min": "min", "gcd": "gcd", "lcm": "lcm",
}
_INVERSE = {"sin": "asin", "cos": "acos", "tan": "atan"}
_CONSTS = {"pi": "pi", "infty": "oo", "infinity": "oo", "inf": "oo", "oo": "oo",
           "e": "e", "i": "i", "imath": "i"}
# Units and nouns that follow a number and do not change it ("5 cm", "12 apples").
_UNITS = {"cm", "mm", "km", "m", "ft", "in", "yd", "mi", "kg", "mg", "g", "lb", "lbs", "oz",
          "ml", "l", "hr", "hrs", "h", "min", "s", "sec", "mph", "kph", "st", "nd", "rd", "th"}
_RELOPS = {"=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!=", "==": "=",
           "=<": "<=", r"\le": "<=", r"\leq": "<=", r"\leqslant": "<=", r"\ge": ">=",
           r"\geq": ">=", r"\geqslant": ">=", r"\lt": "<", r"\gt": ">", r"\ne": "!=",
           r"\neq": "!=", r"\approx": "~", r"\in": "in", r"\coloneqq": "="}
_TEXTLIKE = {"text", "textbf", "textit", "textrm", "textnormal", "mbox", "emph", "textsf",
             "mathrm", "mathbf", "mathit", "mathsf", "boldsymbol", "bm", "mathnormal"}
_IGNORED_WRAPPERS = {"boxed", "fbox", "hat", "vec", "bar", "tilde", "widehat", "underline",
                     "mathbf", "boldsymbol", "bm", "overrightarrow", "mathit", "mathnormal"}
_MATRIX_ENVS = {"pmatrix", "bmatrix", "matrix", "Bmatrix", "vmatrix", "smallmatrix", "array"}
_NUM_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_WORD_RE = re.compile(r"[A-Za-z]+")
_CMD_RE = re.compile(r"\\([A-Za-z]+|.)")
_GROUP_RE = re.compile(r",\d{3}(?!\d)")
_DECIMAL_RE = re.compile(r"\.\d+")
_DECIMAL_COMMA_AT = re.compile(r",(\d{1,2}|\d{4,})(?![\d,.])")
_MIXED_RE = re.compile(r"(\d+)\s*/\s*(\d+)")
_SCI_RE = re.compile(r"[eE]([+-]?\d{1,3})(?![\d.^])")


def _digit(text: str) -> bool:
    return bool(text) and text.isascii() and text.isdigit()


def _letter(ch: str) -> bool:
    return bool(ch) and ch.isascii() and ch.isalpha()


def _num(value, places=None):
    return ("num", Fraction(value), places)


def _add(a, b):
    terms = (a[1] if a[0] == "add" else (a,)) + (b[1] if b[0] == "add" else (b,))
    return ("add", terms)


def _mul(a, b):
    factors = (a[1] if a[0] == "mul" else (a,)) + (b[1] if b[0] == "mul" else (b,))
    return ("mul", factors)


def _is_int_literal(node) -> bool:
    return node[0] == "num" and node[2] is None and node[1].denominator == 1


def _int_value(node):
    """The integer an integer literal (or its negation) stands for, else None."""
    if node[0] == "neg" and _is_int_literal(node[1]):
        return -node[1][1]
    return node[1] if _is_int_literal(node) else None


def _mixed(whole: Fraction, part: Fraction) -> Fraction:
    return whole - part if whole < 0 else whole + part


class _Parser:
    def __init__(self, s: str, thousands: bool, gold: bool = True):
        self.s = s
        self.i = 0
        self.depth = 0
        self.thousands = thousands   # read "1,000" as one number (off when the gold is a list)
        self.gold = gold             # a gold: "3:45" stays a clock time, "1,5" stays a list
        self.units: list[str] = []
        self.nesting = 0             # inside (), [] or \{\}: "(1,100)" is a pair, not 1100

    # -- low-level scanning -------------------------------------------------------------------
    def error(self, what: str):
        raise ParseError(f"{what} at {self.i}: {self.s[max(0, self.i - 10):self.i + 10]!r}")

    def ws(self) -> str:
        s, i = self.s, self.i
        while i < len(s) and s[i].isspace():
            i += 1
        self.i = i
        return s[i] if i < len(s) else ""

    def cmd_at(self, i=None):
        """Name of the backslash command at i (``frac``, ``{``), or None."""
        i = self.i if i is None else i
        if i < len(self.s) and self.s[i] == "\\":
            m = _CMD_RE.match(self.s, i)
            return m.group(1) if m else None
        return None

    def take_cmd(self) -> str:
        name = self.cmd_at()
        self.i += 1 + len(name)
        return name

    def word_at(self):
        m = _WORD_RE.match(self.s, self.i)
        return m.group() if m else None

    def expect(self, ch: str):
        if self.ws() != ch:
            self.error(f"expected {ch!r}")
        self.i += 1

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.error("nested too deeply")

    def raw_group(self) -> str:
        """Text inside a balanced {...} at the cursor (braces removed)."""
        self.expect("{")
        start, level = self.i, 1
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\":
                self.i += 2
                continue
            level += (c == "{") - (c == "}")
            if level == 0:
                self.i += 1
                return self.s[start:self.i - 1]
            self.i += 1
        self.error("unbalanced {")

    def arg_text(self) -> str:
        """Raw text of a LaTeX argument: a {group} or a single character."""
        if self.ws() == "{":
            return self.raw_group()
        self.i += 1
        return self.s[self.i - 1:self.i]

    def textlike_at(self):
        """(content, end) of a \\text{...}-like group at the cursor, else None."""
        name = self.cmd_at()
        if name not in _TEXTLIKE:
            return None
        save = self.i
        self.take_cmd()
        self.ws()
        if self.s[self.i:self.i + 1] != "{":
            self.i = save
            return None
        content = self.raw_group()
        end, self.i = self.i, save
        return content.strip(), end

    # -- separators and words -----------------------------------------------------------------
    def separator_at(self):
        """Kind and end of a list separator at the cursor: ',', 'or', 'and' (else None)."""
        c = self.ws()
        if c in ",;":
            return ",", self.i + 1
        word = self.word_at()
        if word in ("or", "and"):
            return word, self.i + len(word)
        text = self.textlike_at()
        if text and text[0].lower() in ("or", "and", ",", "or,", "and,"):
            return text[0].lower().strip(","), text[1]
        name = self.cmd_at()
        if name in ("lor", "vee"):
            return "or", self.i + 1 + len(name)
        return None

    def unit_at(self):
        """End of a unit or noun after a number ("cm", "\\text{ apples}", "percent"), else None."""
        self.ws()
        text = self.textlike_at()
        if text is not None:
            content, end = text
            if not content or any(_digit(ch) for ch in content) or \
                    content.lower() in ("or", "and"):
                return None
            if len(content) > 1 or self.cmd_at() in ("text", "textrm", "mbox") or \
                    content in _UNITS and content not in "ei":
                return content, end
            return None
        word = self.word_at()
        low = (word or "").lower()
        if word and low not in ("or", "and") and low not in _CONSTS and (
                len(word) >= 3 and low not in _FUNCS or low in _UNITS and len(word) > 1):
            return word, self.i + len(word)
        return None

    # -- grammar --------------------------------------------------------------------------------
    def parse(self):
        node = self.parse_list()
        if self.ws():
            self.error("unexpected text")
        return node

    def parse_list(self):
        self.enter()
        items, seps = [self.parse_item()], []
        while True:
            sep = self.separator_at()
            if sep is None:
                break
            self.i = sep[1]
            seps.append(sep[0])
            if not self.ws() or self.s[self.i] in ")]}" or self.cmd_at() in ("}", "rangle"):
                break          # a trailing comma
            items.append(self.parse_item())
        self.depth -= 1
        if len(items) == 1:
            return items[0]
        joined = "or" if "or" in seps else "and" if "and" in seps else ","
        return ("list", tuple(items), joined)

    def relop_at(self):
        c = self.ws()
        if c in "=<>!":
            two = self.s[self.i:self.i + 2]
            if two in _RELOPS:
                return _RELOPS[two], self.i + 2
            if c in _RELOPS:
                return _RELOPS[c], self.i + 1
            return None
        name = self.cmd_at()
        if name is not None and "\\" + name in _RELOPS:
            return _RELOPS["\\" + name], self.i + 1 + len(name)
        return None

    def parse_item(self):
        parts, ops = [self.parse_ratio()], []
        while (op := self.relop_at()) is not None:
            self.i = op[1]
            ops.append(op[0])
            parts.append(self.parse_ratio())
        if not ops:
            return parts[0]
        if ops == ["in"]:
            return ("in", parts[0], parts[1])
        if "in" in ops:
            self.error("membership inside a chain")
        if "~" in ops and all(op in "=~" for op in ops):
            # "x = \sqrt2 \approx 1.414": the exact value comes before the approximation
            exact = parts[:ops.index("~") + 1]
            parts, ops = (exact, ["="] * (len(exact) - 1)) if len(exact) > 1 or \
                exact[0][0] != "sym" else (parts, ["="] * len(ops))
            if len(parts) == 1:
                return parts[0]
        if all(op == "=" for op in ops):
            return ("eq", tuple(parts))
        return ("rel", tuple(parts), tuple(ops))

    def parse_ratio(self):
        """``a:b`` (a ratio, read as a/b) outside brackets; ``3:45``-like pairs of integers
        (two-digit minutes) are refused so that clock times stay whole text."""
        start = self.i
        node = self.parse_union()
        if self.nesting or self.ws() != ":" or self.s.startswith(":=", self.i):
            return node
        colon = self.i
        self.i += 1
        other = self.parse_union()
        if self.ws() == ":":
            self.error("a ratio of three parts")
        if self.gold and re.fullmatch(r"\s*\d{1,2}\s*", self.s[start:colon]) and \
                re.match(r"\s*\d\d(?![\d.])", self.s[colon + 1:]):
            self.error("a clock time")                     # 3:45, 3:45 PM
        return ("div", node, other)

    def parse_union(self):
        parts = [self.parse_expr()]
        while True:
            self.ws()
            if self.cmd_at() == "setminus":                # A \setminus B: a set difference
                self.take_cmd()
                parts = [("setminus", parts[0] if len(parts) == 1 else ("union", tuple(parts)),
                          self.parse_expr())]
                continue
            if self.cmd_at() == "cup":
                self.take_cmd()
            elif self.s[self.i:self.i + 1] in ("U", "u") and parts[-1][0] in ("seq", "reals") \
                    and self.s[self.i + 1:].lstrip()[:1] in ("(", "["):
                self.i += 1
            else:
                break
            parts.append(self.parse_expr())
        return parts[0] if len(parts) == 1 else ("union", tuple(parts))

    def parse_expr(self):
        node = self.parse_term()
        while True:
            c = self.ws()
            if c == "+":
                self.i += 1
                node = _add(node, self.parse_term())
            elif c == "-":
                self.i += 1
                node = _add(node, ("neg", self.parse_term()))
            elif self.cmd_at() in ("pm", "mp"):
                sign = self.take_cmd()
                rhs = self.parse_term()
                node = ("pm", node, rhs if sign == "pm" else ("neg", rhs))
            else:
                return node

    def starts_primary(self) -> bool:
        c = self.ws()
        if not c or self.separator_at() is not None:
            return False
        if _digit(c) or c in "({" or (c == "." and _digit(self.s[self.i + 1:self.i + 2])):
            return True
        if _letter(c):
            word = self.word_at()
            return word not in ("or", "and") and self.unit_at() is None
        name = self.cmd_at()
        if name is None or name in _TEXTLIKE and self.unit_at() is not None:
            return False
        return name in _PRIMARY_CMDS or name in _FUNCS or name in _CONSTS or name in _TEXTLIKE \
            or name in _IGNORED_WRAPPERS

    def parse_term(self):
        node = self.parse_factor()
        juxtaposed = [node]          # factors written side by side; None after an explicit * or /
        while True:
            c = self.ws()
            name = self.cmd_at()
            if c == "*" and self.s[self.i:self.i + 2] != "**" or name in ("cdot", "times", "ast"):
                self.i += 1 if c == "*" else 1 + len(name)
                node, juxtaposed = _mul(node, self.parse_factor()), None
            elif c == "/" or name == "div":
                self.i += 1 if c == "/" else 1 + len(name)
                node, juxtaposed = ("div", node, self.parse_factor()), None
            elif (unit := self.unit_at()) is not None:
                self.units.append(unit[0])
                self.i = unit[1]
                if unit[0].lower() in ("percent", "percents"):
                    node = ("pct", node)
                elif unit[0].lower() in ("degree", "degrees"):
                    node = ("deg", node)
                if self.ws() == "^":                      # cm^2, \text{ m}^3
                    self.i += 1
                    self.parse_exponent()
                if not self.starts_unit_or_end():
                    self.error("text after a unit")
                juxtaposed = None
            elif self.starts_primary():
                if _digit(c) and juxtaposed and len(juxtaposed) == 1 and \
                        _int_value(node) is not None:
                    node, juxtaposed = self.mixed_number(_int_value(node)), None
                    continue
                factor = self.parse_power()
                node = _mul(node, factor)
                if juxtaposed is not None:
                    juxtaposed.append(factor)
                    if len(juxtaposed) == 2 and self.is_mixed(juxtaposed):
                        node = _num(_mixed(_int_value(juxtaposed[0]),
                                           juxtaposed[1][1][1] / juxtaposed[1][2][1]))
                        juxtaposed = None
            else:
                return node

    def starts_unit_or_end(self) -> bool:
        c = self.ws()
        return (not c or c in ",;)]}=<>+-*/" or self.separator_at() is not None
                or self.unit_at() is not None or self.relop_at() is not None
                or self.cmd_at() in ("}", "rangle", "cup", "pm", "mp", "cdot", "times", "end"))

    def is_mixed(self, pair) -> bool:
        """2\\frac{1}{2} is 5/2 when nothing else is multiplied in (``2\\frac{1}{2}x`` is not)."""
        whole, frac = pair
        if not (_int_value(whole) is not None and frac[0] == "div"
                and _is_int_literal(frac[1]) and _is_int_literal(frac[2])
                and 0 < frac[1][1] < frac[2][1]):
            return False
        return not self.starts_primary() and self.ws() not in ("^", "*", "/")

    def mixed_number(self, whole: Fraction):
        """Plain-text "2 1/2": an integer, a space, a proper fraction and nothing more."""
        m = _MIXED_RE.match(self.s, self.i)
        if not m or not 0 < int(m.group(1)) < int(m.group(2)):
            self.error("two numbers in a row")
        self.i = m.end()
        if self.starts_primary() or self.ws() in ("^", "*", "/"):
            self.error("two numbers in a row")
        return _num(_mixed(whole, Fraction(int(m.group(1)), int(m.group(2)))))

    def parse_factor(self):
        self.enter()
        c = self.ws()
        if c == "-":
            self.i += 1
            node = ("neg", self.parse_factor())
        elif c == "+":
            self.i += 1
            node = self.parse_factor()
        elif self.cmd_at() in ("pm", "mp"):
            sign = self.take_cmd()
            inner = self.parse_factor()
            node = ("pm", _num(0), inner if sign == "pm" else ("neg", inner))
        else:
            node = self.parse_power()
        self.depth -= 1
        return node

    def parse_power(self):
        node = self.parse_postfix()
        while self.ws() == "^" or self.s.startswith("**", self.i):
            self.i += 2 if self.s[self.i] == "*" else 1
            if self.degree_marker():
                node = self.postfix(("deg", node))
                continue
            node = ("pow", node, self.parse_exponent())
            node = self.postfix(node)
        return node

    def degree_marker(self) -> bool:
        self.ws()
        for mark in (r"\circ", r"{\circ}", r"\degree", r"{ \circ }"):
            if self.s.startswith(mark, self.i):
                self.i += len(mark)
                return True
        return False

    def parse_exponent(self):
        self.enter()
        c = self.ws()
        if c == "{":
            self.i += 1
            node = self.parse_list()
            self.expect("}")
        elif c in "-+":
            self.i += 1
            inner = self.parse_exponent()
            node = ("neg", inner) if c == "-" else inner
        elif _digit(c):
            node = self.parse_number()
        elif _letter(c):
            node = self.letter(self.s[self.i])
            self.i += 1
        elif c == "(" or c == "\\":
            node = self.parse_primary()
        else:
            self.error("bad exponent")
        self.depth -= 1
        return node

    def postfix(self, node):
        while True:
            c = self.ws()
            if c == "!" and self.s[self.i + 1:self.i + 2] != "=":
                self.i += 1
                node = ("fact", node)
            elif c == "%" or self.cmd_at() == "%":
                self.i += 1 if c == "%" else 2
                node = ("pct", node)
            elif self.cmd_at() in ("circ", "degree"):
                self.take_cmd()
                node = ("deg", node)
            else:
                return node

    def parse_postfix(self):
        return self.postfix(self.parse_primary())

    def parse_number(self):
        m = _NUM_RE.match(self.s, self.i)
        text = m.group()
        self.i = m.end()
        if self.thousands and not self.nesting and _digit(text) and len(text) <= 3 \
                and text[0] != "0" and _GROUP_RE.match(self.s, self.i):
            while (group := _GROUP_RE.match(self.s, self.i)):
                text += group.group()[1:]
                self.i = group.end()
            if (dec := _DECIMAL_RE.match(self.s, self.i)):
                text += dec.group()
                self.i = dec.end()
        elif self.thousands and not self.nesting and not self.gold and _digit(text) and \
                (comma := _DECIMAL_COMMA_AT.match(self.s, self.i)):
            text += "." + comma.group(1)                  # 1,22 (a scalar gold): a decimal comma
            self.i = comma.end()
        if len(text) > MAX_DIGITS:
            self.error("number too long")
        whole, _, frac = text.partition(".")
        value = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
        if (sci := _SCI_RE.match(self.s, self.i)):           # 1.5e3, 2E-4 (plain-text output)
            self.i = sci.end()
            return ("num", value * Fraction(10) ** int(sci.group(1)), None)
        if "." in text and self.cmd_at() == "overline":       # 0.\overline{3} = 1/3
            self.take_cmd()
            rep = self.arg_text().strip()
            if not _digit(rep) or len(rep) > 50:
                self.error("bad repeating decimal")
            value += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(frac))
            return ("num", value, None)
        return ("num", value, len(frac) if frac else None)

    def letter(self, ch: str):
        if ch in ("e", "i"):
            return ("const", ch)
        return ("sym", ch)

    def parse_arg(self):
        """A LaTeX argument: {group} or one token (\\frac12 reads 1 and 2, \\sqrt3 reads 3)."""
        c = self.ws()
        if c == "{":
            self.i += 1
            node = self.parse_list()
            self.expect("}")
            return node
        if _digit(c):
            self.i += 1
            return _num(int(c))
        if _letter(c):
            self.i += 1
            return self.letter(c)
        if c == "\\":
            return self.parse_primary()
        self.error("missing argument")

    def bracket(self, opener: str):
        closers = {"(": ")]", "[": ")]", "{": "}"}[opener]
        self.i += 1
        if opener == "{" and self.ws() == "}":
            self.i += 1
            return ("empty",)
        self.nesting += 1
        inner = self.parse_list()
        self.nesting -= 1
        close = self.ws()
        if not close or close not in closers:
            self.error("unclosed bracket")
        self.i += 1
        items = inner[1] if inner[0] == "list" else (inner,)
        if len(items) == 1 and (opener, close) in (("(", ")"), ("[", "]"), ("{", "}")):
            return inner
        if len(items) == 1:
            self.error("half-open bracket around one item")
        return ("seq", opener, close, items)

    def parse_primary(self):
        self.enter()
        node = self.primary()
        self.depth -= 1
        return node

    def primary(self):
        c = self.ws()
        if not c:
            self.error("missing operand")
        if _digit(c) or c == "." and _digit(self.s[self.i + 1:self.i + 2]):
            return self.parse_number()
        if c in "([{":
            return self.bracket(c)
        if c == "|":
            self.i += 1
            inner = self.parse_expr()
            self.expect("|")
            return ("fn", "abs", (inner,))
        if _letter(c):
            return self.identifier()
        if c == "\\":
            return self.command()
        self.error("unexpected character")

    def identifier(self):
        word = self.word_at()
        low = word.lower()
        if len(word) > 1 and low in _FUNCS:
            self.i += len(word)
            return self.function(_FUNCS[low])
        if len(word) > 1 and low in _CONSTS:
            self.i += len(word)
            return ("const", _CONSTS[low])
        if len(word) > 2:
            self.error(f"word {word!r}")
        # One letter at a time ("xy" is x*y, the term loop multiplies); a subscript makes a
        # name (a_1, x_{n}).
        self.i += 1
        node = self.letter(word[0])
        if self.s.startswith("_", self.i):
            self.i += 1
            sub = self.arg_text().strip()
            if not sub or not re.fullmatch(r"[\w+\-]+", sub):
                self.error("bad subscript")
            node = ("sym", f"{word[0]}_{sub}")
        return node

    def function(self, name: str):
        power = None
        base = None
        while self.ws() in ("^", "_"):
            mark = self.s[self.i]
            self.i += 1
            arg = self.parse_exponent()
            if mark == "^":
                power = arg
            else:
                base = arg
        if power is not None and power == ("neg", _num(1)) and name in _INVERSE:
            name, power = _INVERSE[name], None
        if self.ws() == "(":
            self.i += 1
            inner = self.parse_list()
            self.expect(")")
            args = inner[1] if inner[0] == "list" and name in ("max", "min", "gcd", "lcm", "log") \
                else (inner,)
        elif name in ("sqrt",) and self.ws() == "{":
            args = (self.parse_arg(),)
        else:
            # \sin 2x means sin(2x): the argument runs over juxtaposed factors.
            arg = self.parse_power()
            while self.starts_primary() and self.cmd_at() not in _FUNCS and \
                    (self.word_at() or "").lower() not in _FUNCS:
                arg = _mul(arg, self.parse_power())
            args = (arg,)
        if name == "sqrt":
            node = ("root", args[0], _num(2))
        elif name == "log" and base is not None:
            node = ("fn", "log", (args[0], base))
        else:
            node = ("fn", name, tuple(args))
        return ("pow", node, power) if power is not None else node

    def command(self):
        name = self.take_cmd()
        if name == "frac":
            return ("div", self.parse_arg(), self.parse_arg())
        if name == "sqrt":
            index = _num(2)
            if self.ws() == "[":
                self.i += 1
                index = self.parse_expr()
                self.expect("]")
            return ("root", self.parse_arg(), index)
        if name == "binom":
            return ("fn", "binom", (self.parse_arg(), self.parse_arg()))
        if name in _CONSTS:
            return ("const", _CONSTS[name])
        if name in _FUNCS:
            return self.function(_FUNCS[name])
        if name == "operatorname":
            fname = self.raw_group().strip()
            if fname.lower() not in _FUNCS:
                self.error(f"unknown function {fname}")
            return self.function(_FUNCS[fname.lower()])
        if name in _TEXTLIKE:
            content = self.arg_text()
            sub = _Parser(content, self.thousands, self.gold)
            sub.depth = self.depth
            return sub.parse()
        if name in _IGNORED_WRAPPERS or name == "overline":
            return self.parse_arg()
        if name == "mathbb":
            if self.arg_text().strip() == "R":
                return ("reals",)
            self.error("number field")
        if name in ("{", "lbrace"):
            self.enter()
            self.nesting += 1
            if self.ws() == "\\" and self.cmd_at() in ("}", "rbrace"):
                self.take_cmd()
                self.depth -= 1
                self.nesting -= 1
                return ("empty",)
            inner = self.parse_list()
            if self.ws() in ("|", ":") or self.cmd_at() == "mid":    # {x | x > 2}
                self.i += 1 if self.s[self.i] in "|:" else 4
                inner = ("in", inner, self.parse_list())
                if inner[1][0] != "sym" or inner[2][0] not in ("rel", "list", "in"):
                    self.error("set-builder form")
                inner = inner[2] if inner[2][0] != "in" else inner[2][2]
            self.ws()
            if self.cmd_at() not in ("}", "rbrace"):
                self.error("unclosed \\{")
            self.take_cmd()
            self.depth -= 1
            self.nesting -= 1
            if inner[0] in ("rel", "in") or inner[0] == "list" and inner[1][0][0] == "rel":
                return inner
            return ("seq", "{", "}", inner[1] if inner[0] == "list" else (inner,))
        if name == "langle":
            self.nesting += 1
            inner = self.parse_list()
            self.nesting -= 1
            self.ws()
            if self.cmd_at() != "rangle":
                self.error("unclosed \\langle")
            self.take_cmd()
            return ("seq", "<", ">", inner[1] if inner[0] == "list" else (inner,))
        if name in ("lfloor", "lceil"):
            inner = self.parse_expr()
            self.ws()
            if self.cmd_at() != ("rfloor" if name == "lfloor" else "rceil"):
                self.error("unclosed floor/ceil")
            self.take_cmd()
            return ("fn", "floor" if name == "lfloor" else "ceil", (inner,))
        if name in ("lvert", "vert", "mid", "|"):
            inner = self.parse_expr()
            self.ws()
            if self.cmd_at() in ("rvert", "vert", "mid", "|"):
                self.take_cmd()
            elif self.s[self.i:self.i + 1] == "|":
                self.i += 1
            else:
                self.error("unclosed |")
            return ("fn", "abs", (inner,))
        if name in ("emptyset", "varnothing"):
            return ("empty",)
        if name == "begin":
            return self.matrix()
        if name == "%":
            self.error("stray percent")
        self.error(f"unsupported \\{name}")

    def matrix(self):
        env = self.raw_group().strip()
        if env not in _MATRIX_ENVS:
            self.error(f"environment {env}")
        if env == "array" and self.ws() == "{":
            self.raw_group()
        rows, row = [], []
        while True:
            self.ws()
            if self.cmd_at() == "end":
                self.take_cmd()
                if self.raw_group().strip() != env:
                    self.error("mismatched \\end")
                break
            row.append(self.parse_item())
            self.ws()
            if self.s[self.i:self.i + 1] == "&":
                self.i += 1
            elif self.cmd_at() == "\\":
                self.take_cmd()
                rows.append(tuple(row))
                row = []
            elif self.cmd_at() != "end":
                self.error("bad matrix cell")
        if row:
            rows.append(tuple(row))
        if not rows or len({len(r) for r in rows}) != 1:
            self.error("ragged matrix")
        return ("matrix", tuple(rows))


_PRIMARY_CMDS = {"frac", "sqrt", "binom", "operatorname", "mathbb", "{", "lbrace", "langle",
                 "lfloor", "lceil", "lvert", "vert", "begin", "emptyset", "varnothing",
                 "overline"}


def parse_answer(text: str, *, thousands: bool = True, gold: bool = True):
    """Parse one cleaned answer into a tuple tree; returns (tree, units dropped).

    thousands: read "1,000" as 1000. Off when the gold is a list, so "1,000" stays two items.
    gold: the text is a gold answer, read conservatively: "3:45" (two-digit minutes) is refused
    so a clock time is compared as text, and "1,5" is a list. For a prediction (False) whose
    gold is a number, "11:21" is the ratio 11/21 and "1,22" the decimal 1.22.
    Raises ParseError for anything it does not understand, never anything else.
    """
    if len(text) > MAX_ANSWER_CHARS:
        raise ParseError("answer too long")
    if not text.strip():
        raise ParseError("empty answer")
    parser = _Parser(text, thousands, gold)
    try:
        tree = parser.parse()
        _check_scalars(tree)
        return tree, tuple(parser.units)
    except ParseError:
        raise
    except (IndexError, ValueError, RecursionError, ZeroDivisionError, TypeError,
            AttributeError) as exc:
        raise ParseError(f"{type(exc).__name__}") from None


_SCALAR = {"num", "sym", "const", "add", "mul", "div", "neg", "pow", "root", "fn", "fact", "pct",
           "deg", "pm"}


def _check_scalars(node, inside_scalar: bool = False):
    """Refuse structures inside arithmetic (``\\sqrt{[1,2]}``, ``2^{x=1}``): no meaning to give."""
    kind = node[0]
    if inside_scalar and kind not in _SCALAR:
        raise ParseError(f"{kind} inside an expression")
    scalar = kind in _SCALAR
    for part in node[1:]:
        if isinstance(part, tuple) and part and isinstance(part[0], str) and part[0] in _KINDS:
            _check_scalars(part, scalar)
        elif isinstance(part, tuple):
            for item in part:
                if isinstance(item, tuple) and item and isinstance(item[0], str):
                    _check_scalars(item, scalar)
                elif isinstance(item, tuple):
                    for cell in item:
                        _check_scalars(cell, scalar)


_KINDS = _SCALAR | {"eq", "rel", "in", "list", "seq", "union", "matrix", "empty", "reals", "text",
                    "setminus"}


# ---------------------------------------------------------------------------------------------
# Printing a tree back (the verdict's normalised forms).

_PREC = {"add": 1, "pm": 1, "mul": 2, "div": 2, "neg": 3, "pow": 4}


def render(node) -> str:
    """A short plain-text spelling of a tree: ``1/2``, ``sqrt(3)/2``, ``(1, 2]``."""
    kind = node[0]
    if kind == "num":
        value, places = node[1], node[2]
        if places:
            sign = "-" if value < 0 else ""
            scaled = abs(value) * 10 ** places
            digits = str(round(scaled)).rjust(places + 1, "0")
            return f"{sign}{digits[:-places]}.{digits[-places:]}"
        return str(value)
    if kind == "sym":
        return node[1]
    if kind == "const":
        return {"oo": "oo", "pi": "pi", "e": "e", "i": "i"}[node[1]]
    if kind == "add":
        out = _wrap(node[1][0], 1)
        for term in node[1][1:]:
            out += " - " + _wrap(term[1], 2) if term[0] == "neg" else " + " + _wrap(term, 1)
        return out
    if kind == "mul":
        return "*".join(_wrap(f, 2) for f in node[1])
    if kind == "div":
        return f"{_wrap(node[1], 2)}/{_wrap(node[2], 3)}"
    if kind == "neg":
        return "-" + _wrap(node[1], 3)
    if kind == "pow":
        return f"{_wrap(node[1], 5)}^{_wrap(node[2], 5)}"
    if kind == "root":
        return f"sqrt({render(node[1])})" if node[2] == _num(2) else \
            f"root({render(node[1])}, {render(node[2])})"
    if kind == "fn":
        return f"{node[1]}({', '.join(render(a) for a in node[2])})"
    if kind == "fact":
        return _wrap(node[1], 5) + "!"
    if kind == "pct":
        return render(node[1]) + "%"
    if kind == "deg":
        return render(node[1]) + "°"
    if kind == "pm":
        return ("" if node[1] == _num(0) else render(node[1]) + " ") + "± " + _wrap(node[2], 2)
    if kind == "eq":
        return " = ".join(render(p) for p in node[1])
    if kind == "rel":
        out = render(node[1][0])
        for op, part in zip(node[2], node[1][1:]):
            out += f" {op} {render(part)}"
        return out
    if kind == "in":
        return f"{render(node[1])} in {render(node[2])}"
    if kind == "list":
        return {",": ", ", "or": " or ", "and": " and "}[node[2]].join(render(x) for x in node[1])
    if kind == "seq":
        return node[1] + ", ".join(render(x) for x in node[3]) + node[2]
    if kind == "union":
        return " U ".join(render(p) for p in node[1])
    if kind == "setminus":
        return f"{render(node[1])} \\ {render(node[2])}"
    if kind == "matrix":
        return "[" + "; ".join(", ".join(render(c) for c in row) for row in node[1]) + "]"
    if kind == "empty":
        return "{}"
    if kind == "reals":
        return "R"
    if kind == "text":
        return node[1]
    return str(node)


def _wrap(node, level: int) -> str:
    text = render(node)
    inner = _PREC.get(node[0], 9)
    if node[0] == "num" and node[1] < 0:
        inner = 3
    if node[0] == "num" and node[1].denominator != 1 and node[2] is None:
        inner = 2
    return f"({text})" if inner < level else text


# ---------------------------------------------------------------------------------------------
# Numbers written in words ("forty-two", "one hundred and five"): whole answers only.

_SMALL = {w: n for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * n for n, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10 ** 6}


def number_from_words(words: str):
    """The integer an English number phrase names, or None ("forty-two" -> 42).

    Only well-formed phrases: "four four" or "twenty twenty five" name no number (words are not
    added up), "fifteen hundred" and "one hundred and five" do.
    """
    tokens = [t for t in words.lower().replace("-", " ").split() if t != "and"]
    if not tokens or len(tokens) > 12:
        return None
    negative = tokens[0] in ("minus", "negative")
    total, current, last, scale = 0, 0, None, None       # last: kind of the previous word
    for token in tokens[negative:]:
        if token in _SMALL and _SMALL[token] < 10:
            ok = last in (None, "hundred", "scale") or last == "tens" and current % 10 == 0
            current, kind = current + _SMALL[token], "unit"
            ok = ok and (token != "zero" or len(tokens) == 1 + negative)
        elif token in _SMALL or token in _TENS:
            ok, kind = last in (None, "hundred", "scale"), "teen" if token in _SMALL else "tens"
            current += _SMALL.get(token) or _TENS.get(token)
        elif token == "hundred":
            ok, kind = last in (None, "unit", "teen") and current % 100 == current, "hundred"
            current = max(current, 1) * 100
        elif token in _SCALES:
            ok, kind = last != "scale" and (scale is None or _SCALES[token] < scale), "scale"
            scale = _SCALES[token]
            total += max(current, 1) * scale
            current = 0
        else:
            return None
        if not ok:
            return None
        last = kind
    value = total + current
    return -value if negative else value
