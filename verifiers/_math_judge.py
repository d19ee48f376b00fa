"""Are two parsed answers the same mathematical object? Decided in-process, bounded, no sympy.

Order of evidence, cheapest first:

1. identical trees;
2. exact rational arithmetic (``fractions.Fraction``) whenever both sides are rational, with size
   guards before every power and factorial (``5^{5^{5^5}}`` raises TooLarge, it is never computed);
3. constants (sqrt, pi, e, i, trig) evaluated with mpmath at 50 digits, which separates any two
   closed forms a model writes (``1-1/e`` vs ``1+1/e``, ``4`` vs ``4\\sqrt2``);
4. expressions with variables evaluated at fixed pseudo-random positive points (negative ones too
   when |x|, floor or ceil appear): one disagreeing point proves them different, agreement at
   every point is an identity test (Schwartz-Zippel style) -- ``\\sqrt{1/n}`` equals ``1/\\sqrt n``
   because answer variables are taken as positive reals.

What this cannot decide (cancellation beyond 50 digits, non-linear inequalities) raises NeedSympy;
``verifiers._math_sympy`` subclasses Judge to finish those in a bounded worker process.
"""
from __future__ import annotations

import math
import threading
from fractions import Fraction

from verifiers._math_deadline import check_time

MAX_BITS = 65_536            # largest numerator/denominator an exact value may reach (one
                             # Fraction step at this size costs milliseconds, not a second)
MAX_FACTORIAL = 5000         # n! computed exactly up to here (5000! has ~54k bits)
MAX_ROOT_INDEX = 1000
SCALAR = {"num", "sym", "const", "add", "mul", "div", "neg", "pow", "root", "fn", "fact", "pct",
          "deg"}
_NON_ANALYTIC = {"abs", "floor", "ceil", "max", "min"}
# Answer variables are evaluated here: positive, irrational-looking, spread over (0.3, 5).
_POINTS = (0.5772156649015329, 1.4142135623730951, 2.718281828459045, 0.3183098861837907,
           1.618033988749895, 3.141592653589793, 0.6931471805599453, 2.23606797749979,
           4.4816890703380645)


class NeedSympy(Exception):
    """The in-process evidence is not conclusive; the sympy worker must decide."""


class TooLarge(Exception):
    """A value too large to compute safely (exponent tower, huge factorial): never evaluated."""


class _NoIntervals(Exception):
    """The object is not a set of real intervals (a point, a tuple, two variables...)."""


class _NotExact(Exception):
    """The value is not a rational number (or not one we can get exactly)."""


# ---------------------------------------------------------------------------------------------
# Exact rational evaluation.

def _checked(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise TooLarge("exact value above the size guard")
    return value


def _iroot(n: int, q: int):
    """The integer q-th root of n >= 0 if n is a perfect q-th power, else None."""
    if n < 2:
        return n
    x = _root_above(n, q)                        # an upper bound; Newton descends from above
    while True:
        check_time()
        y = ((q - 1) * x + n // x ** (q - 1)) // q
        if y >= x:
            break
        x = y
    return x if x ** q == n else None


def _root_above(n: int, q: int) -> int:
    """An integer >= n**(1/q), within a relative 1e-9 of it: Newton from a bound only 2x too
    high needs ~q steps to get close (minutes for q = 1000 on a big n), from here a few."""
    shift = max(n.bit_length() - 64, 0)
    log2 = (math.log2(n >> shift) + shift) / q
    whole = int(log2)
    mantissa = int(2 ** (log2 - whole) * (1 + 1e-9) * 2 ** 60)       # 2^(log2 - whole) << 60
    x = (mantissa >> 60 - whole if whole < 60 else mantissa << whole - 60) + 1
    return x if x ** q >= n else 1 << -(-n.bit_length() // q)


def _root(value: Fraction, q: int) -> Fraction:
    if q <= 0 or q > MAX_ROOT_INDEX:
        raise _NotExact
    if value < 0 and q % 2 == 0:
        raise _NotExact                          # complex
    num, den = _iroot(abs(value.numerator), q), _iroot(value.denominator, q)
    if num is None or den is None:
        raise _NotExact
    return Fraction(-num if value < 0 else num, den)


def _power(base: Fraction, exp: Fraction) -> Fraction:
    if exp.denominator != 1:
        if exp.denominator > MAX_ROOT_INDEX:
            raise _NotExact
        return _power(_root(base, exp.denominator), Fraction(exp.numerator))
    n = exp.numerator
    if base == 0:
        if n < 0:
            raise _NotExact                      # 0 to a negative power
        return Fraction(0 if n else 1)
    if base in (1, -1):
        return Fraction(1 if base == 1 or n % 2 == 0 else -1)
    bits = max(base.numerator.bit_length(), base.denominator.bit_length())
    if abs(n) > MAX_BITS or bits * abs(n) > MAX_BITS:
        raise TooLarge("power above the size guard")
    return base ** n


def exact(node, env=None) -> Fraction:
    """The exact rational value of a tree; raises _NotExact or TooLarge (guards come first)."""
    check_time()
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "neg":
        return -exact(node[1], env)
    if kind == "add":
        total = Fraction(0)
        for term in node[1]:
            total = _checked(total + exact(term, env))
        return total
    if kind == "mul":
        product = Fraction(1)
        for factor in node[1]:
            product = _checked(product * exact(factor, env))
        return product
    if kind == "div":
        num, den = exact(node[1], env), exact(node[2], env)
        if den == 0:
            raise _NotExact
        return _checked(num / den)
    if kind == "pow":
        return _checked(_power(exact(node[1], env), exact(node[2], env)))
    if kind == "root":
        index = exact(node[2], env)
        if index.denominator != 1:
            raise _NotExact
        return _root(exact(node[1], env), int(index))
    if kind == "fact":
        n = exact(node[1], env)
        if n.denominator != 1 or n < 0:
            raise _NotExact
        if n > MAX_FACTORIAL:
            raise TooLarge("factorial above the size guard")
        return Fraction(math.factorial(int(n)))
    if kind == "pct":
        return exact(node[1], env) / 100
    if kind == "sym" and env is not None and node[1] in env:
        return env[node[1]]
    if kind == "fn":
        return _exact_fn(node[1], [exact(a, env) for a in node[2]])
    raise _NotExact


def _exact_fn(name: str, args: list[Fraction]) -> Fraction:
    if name == "abs" and len(args) == 1:
        return abs(args[0])
    if name in ("floor", "ceil") and len(args) == 1:
        return Fraction(math.floor(args[0]) if name == "floor" else math.ceil(args[0]))
    if name in ("max", "min") and args:
        return max(args) if name == "max" else min(args)
    if all(a.denominator == 1 for a in args):
        ints = [int(a) for a in args]
        if name == "binom" and len(ints) == 2 and 0 <= ints[0] <= 10 * MAX_FACTORIAL:
            return _checked(Fraction(math.comb(*ints) if ints[1] >= 0 else 0))
        if name in ("gcd", "lcm") and ints and max(map(abs, ints)).bit_length() < 4096:
            return Fraction(math.gcd(*ints) if name == "gcd" else math.lcm(*ints))
    raise _NotExact


def try_exact(node):
    """Exact value or None; TooLarge still propagates."""
    try:
        return exact(node)
    except _NotExact:
        return None


def guard(node):
    """Raise TooLarge if any power, factorial or binomial in the tree is too big to compute.

    Syntactic: runs before anything is evaluated, so ``x + 999999!`` or ``y^{10^{10}}`` never
    reach mpmath or sympy, whatever else the tree contains.
    """
    check_time()
    kind = node[0]
    if kind == "fact":
        n = try_exact(node[1])
        if n is not None and abs(n) > MAX_FACTORIAL:
            raise TooLarge("factorial above the size guard")
    elif kind == "pow":
        base, exp = try_exact(node[1]), try_exact(node[2])
        if exp is not None and abs(exp) > 10 ** 4 and (base is None or abs(base) != 1):
            if base is None or base != 0:
                _power(base if base is not None else Fraction(2), exp)   # raises if huge
    elif kind == "fn" and node[1] == "binom":
        n = try_exact(node[2][0]) if node[2] else None
        if n is not None and abs(n) > 10 * MAX_FACTORIAL:
            raise TooLarge("binomial above the size guard")
    for child in children(node):
        guard(child)


# ---------------------------------------------------------------------------------------------
# Numeric evaluation with mpmath (imported on first use: the integer path never needs it).

class _Undefined(Exception):
    """Division by zero, log(0), an unknown variable: no value at this point."""


_CONTEXTS = threading.local()


def _context(dps: int):
    """A private mpmath context per thread and precision (creating one costs ~0.25 ms)."""
    contexts = getattr(_CONTEXTS, "by_dps", None)
    if contexts is None:
        contexts = _CONTEXTS.by_dps = {}
    if dps not in contexts:
        import mpmath
        contexts[dps] = mpmath.MPContext()       # not mpmath.mp: its precision is global
        contexts[dps].dps = dps
    return contexts[dps]


class Numeric:
    """Evaluates trees at a fixed precision; ``lossy`` records catastrophic cancellation."""

    def __init__(self, dps: int, env=None):
        self.mp = _context(dps)
        self.env = {name: self.mp.mpf(v) for name, v in (env or {}).items()}
        self.lossy = False
        self._cancel = self.mp.mpf(10) ** (15 - dps)

    def value(self, node):
        try:
            return self._ev(node)
        except (ArithmeticError, ValueError, KeyError, TypeError) as exc:
            raise _Undefined(type(exc).__name__) from None

    def _ev(self, node):
        check_time()
        mp, kind = self.mp, node[0]
        if kind == "num":
            return mp.mpf(node[1].numerator) / node[1].denominator
        if kind == "const":
            if node[1] == "oo":
                raise _Undefined("infinity")
            return {"pi": mp.pi, "e": mp.e, "i": mp.mpc(0, 1)}[node[1]] + 0
        if kind == "sym":
            return self.env[node[1]]
        if kind == "neg":
            return -self._ev(node[1])
        if kind == "add":
            terms = [self._ev(t) for t in node[1]]
            total = mp.fsum(terms)
            largest = max(abs(t) for t in terms)
            if largest and abs(total) < largest * self._cancel:
                self.lossy = True
            return total
        if kind == "mul":
            return mp.fprod(self._ev(f) for f in node[1])
        if kind == "div":
            den = self._ev(node[2])
            if den == 0:
                raise ZeroDivisionError
            return self._ev(node[1]) / den
        if kind == "pow":
            return self._pow(self._ev(node[1]), self._ev(node[2]))
        if kind == "root":
            value, index = self._ev(node[1]), self._ev(node[2])
            if index == 0:
                raise ZeroDivisionError
            if mp.im(value) == 0 and value < 0 and index == int(index) and int(index) % 2:
                return -self._pow(-value, 1 / index)     # real odd root: cbrt(-8) = -2
            return self._pow(value, 1 / index)
        if kind == "fact":
            n = self._ev(node[1])
            if abs(n) > 10 ** 5:
                raise TooLarge("factorial above the size guard")
            if mp.im(n) != 0 or (n < 0 and n == int(n)):
                raise ValueError("factorial")
            return mp.factorial(n)
        if kind == "pct":
            return self._ev(node[1]) / 100
        if kind == "deg":
            return self._ev(node[1]) * mp.pi / 180
        if kind == "fn":
            return self._fn(node[1], [self._ev(a) for a in node[2]])
        raise ValueError(kind)

    def _pow(self, base, exp):
        mp = self.mp
        if base == 0:
            if mp.re(exp) <= 0:
                raise ZeroDivisionError
            return mp.mpf(0)
        # Size guard: |base^exp| = e^(re(exp) ln|base| - im(exp) arg(base)); refuse huge ones.
        if abs(mp.re(exp) * mp.log(abs(base))) + abs(mp.im(exp)) > 10 ** 6:
            raise TooLarge("numeric power above the size guard")
        if mp.im(exp) == 0 and exp == int(exp) and abs(exp) < 10 ** 4:
            return base ** int(exp)
        return mp.power(base, exp)

    def _fn(self, name, args):
        mp = self.mp
        x = args[0]
        if name in ("sin", "cos", "tan", "cot", "sec", "csc", "sinh", "cosh", "tanh", "exp"):
            if abs(x) > 10 ** 5:
                raise TooLarge("function argument above the size guard")
        if name == "log":
            if x == 0 or len(args) == 2 and (args[1] == 0 or args[1] == 1):
                raise ZeroDivisionError
            return mp.log(x) / (mp.log(args[1]) if len(args) == 2 else 1)
        simple = {"sin": mp.sin, "cos": mp.cos, "tan": mp.tan, "cot": mp.cot, "sec": mp.sec,
                  "csc": mp.csc, "asin": mp.asin, "acos": mp.acos, "atan": mp.atan,
                  "sinh": mp.sinh, "cosh": mp.cosh, "tanh": mp.tanh, "exp": mp.exp,
                  "abs": abs, "sqrt": mp.sqrt}
        if name in simple and len(args) == 1:
            return simple[name](x)
        if any(mp.im(a) != 0 for a in args):
            raise ValueError("complex argument")
        if name == "floor" and len(args) == 1:
            return mp.floor(x)
        if name == "ceil" and len(args) == 1:
            return mp.ceil(x)
        if name in ("max", "min"):
            return max(args) if name == "max" else min(args)
        if name == "binom" and len(args) == 2 and abs(x) < 10 ** 5:
            return mp.binomial(x, args[1])
        raise ValueError(name)


def close(a, b, rel) -> bool:
    diff = abs(a - b)
    return diff <= rel * max(abs(a), abs(b)) or diff <= rel * 1e-10


# ---------------------------------------------------------------------------------------------
# Small tree helpers.

_KINDS = SCALAR | {"eq", "rel", "in", "list", "seq", "union", "matrix", "empty", "reals",
                   "text", "pm", "assign", "setminus"}


def _is_node(part) -> bool:
    return isinstance(part, tuple) and bool(part) and isinstance(part[0], str) and \
        part[0] in _KINDS


def children(node):
    """Sub-trees of a node: direct ones, items of tuples, cells of matrix rows."""
    for part in node[1:]:
        if _is_node(part):
            yield part
        elif isinstance(part, tuple):
            for item in part:
                if _is_node(item):
                    yield item
                elif isinstance(item, tuple):
                    yield from (cell for cell in item if _is_node(cell))


def free_symbols(node) -> frozenset:
    if node[0] == "sym":
        return frozenset((node[1],))
    out = frozenset()
    for child in children(node):
        out |= free_symbols(child)
    return out


def _contains_fn(node, names) -> bool:
    return node[0] == "fn" and node[1] in names or any(
        _contains_fn(child, names) for child in children(node))


def substitute(node, name: str, value):
    """The scalar tree with every variable ``name`` replaced by the tree ``value``."""
    if node[0] == "sym":
        return value if node[1] == name else node
    return tuple(substitute(part, name, value) if _is_node(part) else
                 tuple(substitute(c, name, value) for c in part) if isinstance(part, tuple)
                 else part for part in node)


def degree(node, x: str):
    """Polynomial degree in x, or None when x appears inside anything but + - * / integer ^."""
    kind = node[0]
    if x not in free_symbols(node):
        return 0
    if kind == "sym":
        return 1
    if kind in ("neg", "pct"):
        return degree(node[1], x)
    if kind == "add":
        degrees = [degree(t, x) for t in node[1]]
        return None if None in degrees else max(degrees)
    if kind == "mul":
        degrees = [degree(f, x) for f in node[1]]
        return None if None in degrees else sum(degrees)
    if kind == "div":
        return degree(node[1], x) if degree(node[2], x) == 0 else None
    if kind == "pow":
        base, n = degree(node[1], x), try_exact_quiet(node[2])
        if base is not None and n is not None and n.denominator == 1 and 0 <= n <= 64:
            return base * int(n)
    return None


def try_exact_quiet(node):
    """Exact value or None, also for values too large to compute."""
    try:
        return try_exact(node)
    except TooLarge:
        return None


def inf_sign(node) -> int:
    """+1 for oo, -1 for -oo, 0 for anything else."""
    if node == ("const", "oo"):
        return 1
    if node[0] == "neg":
        return -inf_sign(node[1])
    return 0


def render_short(node) -> str:
    from verifiers._math_parse import render
    text = render(node)
    return text if len(text) < 40 else text[:39] + "…"


def _num(value):
    return ("num", Fraction(value), None)


def _minus(a, b):
    return ("add", (a, ("neg", b)))


def gold_places(node):
    """Decimal places written in a gold like ``3.14`` or ``-0.25`` (None if not a decimal)."""
    if node[0] == "neg":
        return gold_places(node[1])
    return node[2] if node[0] == "num" else None


# Precision policy (gold-guided). A written decimal is either an exact value or a rounding:
# - a decimal gold is read as *rounded* when it has two or more places and does not end in 5
#   (3.14, 0.33, 85.71, 1.50): a prediction within half a unit of its last place is accepted
#   (3.14159), and so is a rounding of the gold at fewer places if the prediction shows enough
#   digits (3.14159 gold, 3.14 prediction);
# - a decimal gold with one place or ending in 5 (0.5, 2.4, 0.25, 0.125) is read as *exact*:
#   only the same value is accepted (0.54 and 0.46 are other answers, not 0.5 "at one place");
# - an exact gold (1/3, 600/7, sqrt 2, pi, 1/8) is matched exactly: 0.33 is not 1/3, because
#   whether a rounded decimal answers the question depends on the question, which the verifier
#   does not see. With ``allow_rounded=True`` (the question asks for a decimal), an exact gold
#   with no finite decimal accepts its rounding at the places the prediction writes, if the
#   prediction shows enough digits (85.71 or 85.7 for 600/7); 1/8 still needs 0.125.
# "Enough digits": two decimal places or three significant digits (0.33 and 85.7 for 1/3 and
# 600/7; not 0.3 or 3.1). Truncations (0.66 for 2/3) are not roundings.

def _places(node):
    """Decimal places written in a literal (or its negation), else None."""
    if node[0] == "neg":
        return _places(node[1])
    return node[2] if node[0] == "num" and node[2] else None


def _digits_shown(value: Fraction, places: int) -> bool:
    """Two or more decimal places, or three or more significant digits."""
    return places >= 2 or len(str(abs(int(value * 10 ** places)))) >= 3


def _rounded_gold(value: Fraction, places: int) -> bool:
    """A decimal gold that reads as a rounding: two or more places, last digit not 5."""
    return places >= 2 and abs(int(value * 10 ** places)) % 10 != 5


def _terminates(value: Fraction) -> bool:
    """True if value has a finite decimal expansion (denominator 2^a 5^b)."""
    d = value.denominator
    for prime in (2, 5):
        while d % prime == 0:
            d //= prime
    return d == 1


def _within(a, b, places: int) -> bool:
    """|a - b| <= half a unit in the last of ``places`` decimal places."""
    return abs(a - b) * 2 * 10 ** places <= 1


# ---------------------------------------------------------------------------------------------
# Normal forms of structures.

def _name(node):
    """The name on the left of an assignment: ``x``, or ``f`` in ``f(x)`` / ``f(x, y)``."""
    if node[0] == "sym":
        return node[1]
    if node[0] == "mul" and len(node[1]) == 2 and node[1][0][0] == "sym" and (
            node[1][1][0] == "sym" or node[1][1][0] == "seq" and node[1][1][1] == "(" and
            all(a[0] == "sym" for a in node[1][1][3])):
        return node[1][0][1] + "(...)"
    return None


def _label(node) -> bool:
    """A name standing for a value: ``x``, ``AB``, ``|AB|``, ``V_1:V_2``, ``f(x)``, ``P(A)``."""
    kind = node[0]
    if kind == "sym":
        return True
    if kind == "mul":
        return all(f[0] == "sym" or f[0] == "seq" and f[1] == "(" and
                   all(a[0] == "sym" for a in f[3]) for f in node[1])
    if kind == "fn" and node[1] == "abs":
        return _label(node[2][0])
    return kind == "div" and _label(node[1]) and _label(node[2])


def _arguments(lhs):
    """Variable names in ``f(x)`` / ``f(x, y)`` on the left of an assignment, else ()."""
    if lhs[0] != "mul" or len(lhs[1]) != 2:
        return ()
    arg = lhs[1][1]
    return (arg[1],) if arg[0] == "sym" else tuple(a[1] for a in arg[3]) if arg[0] == "seq" else ()


def _renamed(value, old, new):
    """value with the variables ``old`` renamed to ``new`` (position by position)."""
    temps = [f"_{k}" for k in range(len(old))]
    for name, temp in zip(old, temps):
        value = substitute(value, name, ("sym", temp))
    for temp, name in zip(temps, new):
        value = substitute(value, temp, ("sym", name))
    return value


def _assignment(node):
    """(name, value) for ``x = 3`` or ``f(x) = 2x`` (a name on the left), else None."""
    if node[0] == "eq" and len(node[1]) == 2 and _name(node[1][0]):
        return _name(node[1][0]), node[1][1]
    return None


def _split_pm(node):
    """(tree with +, tree with -) for the first ± inside a scalar tree, or None if it has none."""
    if node[0] == "pm":
        a, b = node[1], node[2]
        if a == _num(0):
            return b, ("neg", b)
        return ("add", (a, b)), _minus(a, b)
    if node[0] not in SCALAR:
        return None
    for k, part in enumerate(node):
        options = None
        if _is_node(part):
            options = _split_pm(part)
            if options:
                return tuple(node[:k] + (o,) + node[k + 1:] for o in options)
        elif isinstance(part, tuple):
            for m, item in enumerate(part):
                options = _split_pm(item) if _is_node(item) else None
                if options:
                    return tuple(node[:k] + (part[:m] + (o,) + part[m + 1:],) + node[k + 1:]
                                 for o in options)
    return None


def _expand_pm(node):
    """a ± b -> the two values it stands for (a list), also inside x = ... and fractions."""
    if node[0] == "eq" and len(node[1]) == 2:
        values = _expand_pm(node[1][1])
        if values[0] == "list":
            return ("list", tuple(("eq", (node[1][0], v)) for v in values[1]), "or")
        return node
    values = [node]
    for _ in range(2):                                # at most two ± signs: four values
        split = [_split_pm(v) for v in values]
        if not any(split):
            break
        values = [o for v, sp in zip(values, split) for o in (sp or (v,))]
    return node if len(values) == 1 else ("list", tuple(values), "or")


def prepare(node):
    """Normal form before comparing: x ∈ S -> S, ± expanded, x = 2 or x = 3 -> 2 or 3."""
    kind = node[0]
    if kind == "in":
        return prepare(node[2])
    if kind == "eq" and len(node[1]) > 2:
        # "x = 2 + 3 = 5": the last part is the value, the first the name if there is one.
        if not free_symbols(node):
            return node                              # 2 + 3 = 5 = 6: the judge checks each step
        node = ("eq", (node[1][0], node[1][-1])) if node[1][0][0] == "sym" else node[1][-1]
        return prepare(node)
    if kind == "eq" and node[1][0][0] == "seq" and node[1][1][0] == "seq":
        return prepare(node[1][1])                   # (x, y) = (1, 2)
    node = _expand_pm(node)
    if node[0] != "list":
        return node
    items = []
    for item in node[1]:
        item = prepare(item)
        items.extend(item[1] if item[0] == "list" else (item,))
    joined = node[2]
    names = {a[0] for a in map(_assignment, items) if a}
    if len(names) == 1 and _assignment(items[0]):
        # "x = 2, 3" and "x = 2 or x = 3" are the values 2 and 3
        items = [(_assignment(i) or (None, i))[1] for i in items]
    elif len(names) > 1 and all(_assignment(i) for i in items):
        return ("assign", tuple(_assignment(i) for i in items))
    return items[0] if len(items) == 1 else ("list", tuple(items), joined)


def kind_of(node) -> str:
    """Machine word for what an answer is: integer, rational, decimal, number, expression, ..."""
    kind = node[0]
    if kind == "num":
        if node[2]:
            return "decimal"
        return "integer" if node[1].denominator == 1 else "rational"
    if kind == "neg" and node[1][0] == "num":
        return kind_of(node[1])
    if kind in SCALAR:
        if free_symbols(node):
            return "expression"
        value = try_exact_quiet(node)
        if value is None:
            return "number"
        return "integer" if value.denominator == 1 else "rational"
    if kind == "seq":
        if node[1] == "{":
            return "set"
        if len(node[3]) == 2 and node[1] + node[2] != "()":
            return "interval" if node[1] + node[2] != "<>" else "tuple"
        if len(node[3]) == 2 and any(_infinite(x) for x in node[3]):
            return "interval"                          # (2, \infty): no point has an infinite coordinate
        return "tuple"
    return {"union": "interval", "reals": "interval", "setminus": "interval", "empty": "set",
            "matrix": "matrix",
            "eq": "equation", "rel": "inequality", "list": "list", "assign": "assignments",
            "text": "text"}.get(kind, kind)


def _infinite(node) -> bool:
    """``oo`` or ``-oo``."""
    return node == ("const", "oo") or node[0] == "neg" and node[1] == ("const", "oo")


def _interval_like(node) -> bool:
    return node[0] in ("union", "reals", "empty", "rel", "setminus") or (
        node[0] == "seq" and len(node[3]) == 2 and node[1] in "([" and node[2] in ")]") or (
        node[0] == "list" and all(_interval_like(i) for i in node[1]))


def _items(node):
    """The elements of something list-like, or None."""
    if node[0] == "list":
        return node[1]
    if node[0] == "seq":
        return node[3]
    if node[0] == "empty":
        return ()
    if node[0] == "matrix" and (len(node[1]) == 1 or all(len(r) == 1 for r in node[1])):
        return tuple(c for row in node[1] for c in row)       # a row or column vector
    return None


# ---------------------------------------------------------------------------------------------
# The judge.

class Judge:
    """Gold-guided comparison of two parsed answers; records its path in ``steps``.

    rel_tol: accept decimals within this relative error of the gold (None: compare at the
    precision written, the precision policy above; the default and what the benchmark uses).
    allow_rounded: an exact gold with no finite decimal (600/7) also accepts its rounding at
    the places the prediction writes (85.71) -- for questions that ask for a rounded decimal.
    """

    def __init__(self, rel_tol: float | None = None, allow_rounded: bool = False):
        self.rel_tol = rel_tol
        self.allow_rounded = allow_rounded
        self._intervals: dict = {}        # tree -> its merged intervals (see interval_set)
        self.steps: list[str] = []

    def note(self, text: str):
        self.steps.append(text)

    # -- entry ----------------------------------------------------------------------------------
    def judge(self, gold, pred) -> str:
        """'equal', 'not_equal' or 'hedged' (several different answers offered for one)."""
        if pred[0] == "eq" and len(pred[1]) > 2 and gold[0] != "eq" and \
                not free_symbols(("eq", pred[1][1:])) and not all(
                    self.quiet_same(a, b) for a, b in zip(pred[1][1:], pred[1][2:])):
            self.note("the prediction states a false equation between numbers")  # x = 3 = 4
            return "not_equal"
        gold, pred = prepare(gold), prepare(pred)
        if gold == pred:
            self.note("identical after normalisation")
            return "equal"
        guard(gold)
        guard(pred)
        single = gold[0] in SCALAR or gold[0] in ("eq", "matrix") or (
            gold[0] == "seq" and gold[1] != "{" and kind_of(gold) != "interval")
        bare_tuple = gold[0] == "seq" and pred[0] == "list" and pred[2] == "," and \
            len(pred[1]) == len(gold[3])                 # "2, 5" for the pair (2, 5)
        if single and pred[0] == "list" and not bare_tuple and \
                not all(i[0] == "rel" for i in pred[1]):
            hits = [self.quiet_same(gold, item) for item in pred[1]]
            if all(hits):
                self.note("every alternative offered equals the gold")
                return "equal"
            if any(hits):
                self.note(f"{len(pred[1])} different answers offered for one: hedged")
                return "hedged"
            return "not_equal"
        return "equal" if self.same(gold, pred) else "not_equal"

    def same(self, g, p) -> bool:
        check_time()
        ga, pa = _assignment(g), _assignment(p)
        if ga and pa:
            if ga[0] != pa[0]:
                self.note(f"different variables: {ga[0]} vs {pa[0]}")
                return False
            old, new = _arguments(p[1][0]), _arguments(g[1][0])
            if old != new and len(old) == len(new) and ga[0].endswith("(...)") and \
                    free_symbols(pa[1]) <= set(old):
                self.note(f"the function's variable renamed: {', '.join(old)} -> {', '.join(new)}")
                return self.same(ga[1], _renamed(pa[1], old, new))
            return self.same(ga[1], pa[1])
        if ga and p[0] != "eq" and ga[1][0] != "eq":
            self.note(f"gold assigns {ga[0]}: comparing its value")
            return self.same(ga[1], p)
        if pa and g[0] != "eq":
            self.note(f"prediction assigns {pa[0]}: comparing its value")
            return self.same(g, pa[1])
        if g[0] == "eq" and len(g[1]) == 2 and p[0] != "eq" and _label(g[1][0]) and \
                not free_symbols(g[1][1]):
            self.note(f"gold names its value {render_short(g[1][0])}: comparing the value")
            return self.same(g[1][1], p)
        if p[0] == "eq" and g[0] in SCALAR and not free_symbols(p[1][-1]):
            if not free_symbols(p) and not all(
                    self.quiet_same(a, b) for a, b in zip(p[1], p[1][1:])):
                self.note("the prediction states a false equation between numbers")
                return False
            self.note(f"prediction states {render_short(p[1][0])} = value: comparing the value")
            return self.same(g, p[1][-1])
        gk = g[0]
        if gk in SCALAR:
            if p[0] in SCALAR:
                return self.scalar(g, p)
            if p[0] == "matrix" and len(p[1]) == 1 and len(p[1][0]) == 1:
                return self.scalar(g, p[1][0][0])
            return self.mismatch(g, p)
        if gk == "eq":
            return self.equations(g, p) if p[0] == "eq" else self.mismatch(g, p)
        if gk == "rel" and p[0] == "rel" and len(self.rel_symbols(g)) > 1:
            return self.relations(g, p)
        if gk == "list" and _interval_like(g) and _interval_like(p) and \
                len(free_symbols(g) | free_symbols(p)) <= 1:
            return self.intervals(g, p)                  # x < 2 or x > 3 vs a union
        if gk in ("rel", "union", "reals", "setminus") or gk == "seq" and \
                kind_of(g) == "interval":
            return self.intervals(g, p) if _interval_like(p) else self.mismatch(g, p)
        if gk == "empty":
            return (_items(p) == () or _interval_like(p) and self.intervals(g, p)) or \
                self.mismatch(g, p)
        if gk == "seq" and g[1] == "{" or gk == "list":
            if kind_of(p) == "interval" or gk == "seq" and kind_of(p) == "tuple":
                return self.mismatch(g, p)
            items = _items(p) if p[0] in ("list", "seq", "empty") else (p,)
            if p[0] == "assign":                          # b = -3, c = 0 for "-3, 0"
                items = tuple(value for _, value in p[1])
            return self.unordered(_items(g), items)
        if gk == "seq":                                  # tuples, pairs, vectors
            return self.sequence(g, p)
        if gk == "matrix":
            return self.matrix(g, p)
        if gk == "assign":
            return self.assignments(g, p)
        return self.mismatch(g, p)

    def mismatch(self, g, p) -> bool:
        self.note(f"gold is {kind_of(g)}, prediction is {kind_of(p)}")
        return False

    # -- scalars ---------------------------------------------------------------------------------
    def scalar(self, g, p) -> bool:
        """Numbers and expressions; a percent or degree sign on one side allows both readings."""
        unit_g = g[0] if g[0] in ("pct", "deg") else None
        unit_p = p[0] if p[0] in ("pct", "deg") else None
        if unit_g and unit_g == unit_p:
            return self.core(g[1], p[1])
        if not unit_g and not unit_p:
            return self.core(g, p)
        marked, other = (g, p) if unit_g else (p, g)
        inner = marked[1]
        converted = ("div", inner, _num(100)) if marked[0] == "pct" else \
            ("mul", (inner, ("const", "pi"), ("pow", _num(180), _num(-1))))
        word = "percent sign" if marked[0] == "pct" else "degree sign"
        readings = ((inner, "as a unit"), (converted, "as its value"))
        if marked is p and unit_p == "pct":
            # Gold-guided: a bare gold below 1 in size is a proportion (0.25: the prediction's
            # 25% is its value), above 1 a number of percent (25: the % is a unit). Either way
            # one reading only, so 0.25% is not 0.25 and 2500% is not 25.
            size = try_exact_quiet(g)
            if size is not None and abs(size) != 1 and size != 0:
                readings = readings[1:] if abs(size) < 1 else readings[:1]
        for reading, how in readings:
            pair = (reading, other) if marked is g else (other, reading)
            if self.core(*pair, quiet=True):
                self.note(f"{word} read {how}: equal")
                return True
        self.note(f"not equal with the {word} read "
                  f"{' or '.join(how for _, how in readings)}")
        return False

    def core(self, g, p, quiet: bool = False) -> bool:
        note = (lambda text: None) if quiet else self.note
        sg, sp = inf_sign(g), inf_sign(p)
        if sg or sp:
            note(f"infinity compare: {'equal' if sg == sp else 'not equal'}")
            return sg == sp
        gv, pv = try_exact(g), try_exact(p)
        if gv is not None and pv is not None:
            if gv == pv:
                note("exact rational compare: equal")
                return True
            return self.rounded(g, p, gv, pv, note, "exact rational compare")
        names = free_symbols(g) | free_symbols(p)
        if not names:
            return self.constant(g, p, note)
        return self.identity(g, p, sorted(names), note)

    def rounded(self, g, p, gv, pv, note, how) -> bool:
        """Two different values that may still be one answer written at some precision: the
        precision policy above (``_places`` and below); ``gv``, ``pv`` exact or mpmath reals."""
        if self.rel_tol is not None and abs(pv - gv) <= self.rel_tol * abs(gv):
            note(f"{how}: equal within rel_tol={self.rel_tol}")
            return True
        gp, pp = _places(g), _places(p)
        exact_g = try_exact_quiet(g)
        if gp and _rounded_gold(exact_g, gp):
            if _within(pv, gv, gp):
                note(f"{how}: equal at the {gp} decimal places written in the gold")
                return True
            if pp and pp < gp and _digits_shown(pv, pp) and _within(gv, pv, pp):
                note(f"{how}: the gold rounded at the {pp} places written in the prediction")
                return True
        elif self.allow_rounded and not gp and pp and _digits_shown(pv, pp) and _within(gv, pv, pp) and (
                exact_g is None or not _terminates(exact_g)):
            note(f"{how}: the exact gold rounded at the {pp} places written in the prediction")
            return True
        note(f"{how}: not equal")
        return False

    def constant(self, g, p, note) -> bool:
        num = Numeric(50)
        try:
            a, b = num.value(g), num.value(p)
        except _Undefined as exc:
            note(f"a side has no value ({exc})")
            return False
        if close(a, b, 1e-35):
            if num.lossy:
                return self.undecided_scalar(g, p, "cancellation at 50 digits")
            note("numeric compare at 50 digits: equal")
            return True
        real = num.mp.im(a) == 0 and num.mp.im(b) == 0
        if real and (self.rel_tol is not None or _places(g) or _places(p)):
            said = []
            if self.rounded(g, p, Fraction(str(num.mp.nstr(a, 40))),
                            Fraction(str(num.mp.nstr(b, 40))), said.append, "numeric compare"):
                note(said[-1])
                return True
        if num.lossy:
            return self.undecided_scalar(g, p, "cancellation at 50 digits")
        note(f"numeric compare at 50 digits: {num.mp.nstr(a, 8)} != {num.mp.nstr(b, 8)}")
        return False

    def points(self, g, p, names):
        """Environments to test at: positive reals, negative too around |x|, floor, ceil."""
        signed = _contains_fn(g, _NON_ANALYTIC) or _contains_fn(p, _NON_ANALYTIC)
        count = 9 if signed else 6
        for k in range(count):
            sign = -1 if signed and k % 2 else 1
            yield {n: sign * _POINTS[(k + 4 * j) % len(_POINTS)] * (1 + 0.1 * j)
                   for j, n in enumerate(names)}

    def at_points(self, g, p, names):
        """(point, context, value of g, value of p) where both are defined, at 30 digits."""
        for env in self.points(g, p, names):
            num = Numeric(30, env)
            try:
                a, b = num.value(g), num.value(p)
            except _Undefined:
                continue
            if not num.lossy:
                yield env, num, a, b

    def identity(self, g, p, names, note) -> bool:
        tested = 0
        for env, num, a, b in self.at_points(g, p, names):
            if not close(a, b, 1e-20):
                where = ", ".join(f"{n}={v:.3f}" for n, v in env.items())
                note(f"differ at {where}: {num.mp.nstr(a, 8)} vs {num.mp.nstr(b, 8)}")
                return False
            tested += 1
        if tested >= 3:
            note(f"equal at {tested} random points (numeric identity test, {', '.join(names)} > 0)")
            return True
        return self.undecided_scalar(g, p, "too few points where both sides are defined")

    def undecided_scalar(self, g, p, why: str) -> bool:
        raise NeedSympy(why)

    # -- equations and relations -------------------------------------------------------------
    def ratios(self, fg, fp, names):
        """d_gold / d_pred at the test points (None where both vanish); None if one vanishes."""
        out = []
        for _, _, a, b in self.at_points(fg, fp, names):
            small_a, small_b = abs(a) < 1e-20, abs(b) < 1e-20
            if small_a and small_b:
                continue
            if small_a or small_b:
                return None
            out.append(a / b)
        return out

    def equations(self, g, p) -> bool:
        """Same solution set: (lhs - rhs) of one is a non-zero constant times the other's."""
        fg, fp = _minus(g[1][0], g[1][-1]), _minus(p[1][0], p[1][-1])
        names = sorted(free_symbols(fg) | free_symbols(fp))
        if not names:
            return self.mismatch(g, p)
        ratios = self.ratios(fg, fp, names)
        if ratios is None or len(ratios) < 3:
            self.note("equations differ (one side vanishes where the other does not)")
            return False
        if all(close(r, ratios[0], 1e-15) for r in ratios):
            self.note("equations are multiples of each other at every test point: equal")
            return True
        self.note("equations are not multiples of each other")
        return False

    def rel_symbols(self, node):
        out = frozenset()
        for part in node[1]:
            out |= free_symbols(part)
        return out

    def relations(self, g, p) -> bool:
        """Inequalities in several variables: same direction and a positive multiple."""
        def normal(node):
            if len(node[2]) != 1 or node[2][0] == "!=":
                return None
            (lhs, rhs), op = node[1], node[2][0]
            if op in (">", ">="):
                lhs, rhs, op = rhs, lhs, op.replace(">", "<")
            return _minus(lhs, rhs), op
        ng, np_ = normal(g), normal(p)
        if not ng or not np_ or ng[1] != np_[1]:
            self.note("relations differ in kind or strictness")
            return False
        names = sorted(free_symbols(ng[0]) | free_symbols(np_[0]))
        ratios = self.ratios(ng[0], np_[0], names)
        ok = bool(ratios) and len(ratios) >= 3 and ratios[0] > 0 and \
            all(close(r, ratios[0], 1e-15) for r in ratios)
        self.note(f"relations are {'' if ok else 'not '}positive multiples of each other")
        return ok

    # -- intervals ---------------------------------------------------------------------------
    def intervals(self, g, p) -> bool:
        try:
            ig, ip = self.interval_set(g), self.interval_set(p)
        except _NoIntervals as exc:
            self.note(f"not comparable as sets of reals: {exc}")
            return False
        except NeedSympy:
            return self.undecided_intervals(g, p)
        if len(ig) != len(ip):
            self.note(f"{len(ig)} interval(s) vs {len(ip)}")
            return False
        for (lo1, hi1, lc1, hc1), (lo2, hi2, lc2, hc2) in zip(ig, ip):
            if (lc1, hc1) != (lc2, hc2):
                self.note("open vs closed endpoints differ")
                return False
            if not (self.core(lo1, lo2, quiet=True) and self.core(hi1, hi2, quiet=True)):
                self.note("interval endpoints differ")
                return False
        self.note("same intervals (endpoints and open/closed ends)")
        return True

    def undecided_intervals(self, g, p) -> bool:
        raise NeedSympy("a non-linear inequality")

    def interval_set(self, node):
        """A sorted, merged list of (lo, hi, lo_closed, hi_closed); raises NeedSympy.

        Remembered per judge: matching m inequalities against each other solves each once."""
        if node not in self._intervals:
            self._intervals[node] = _merge(self._raw_intervals(node))
        return self._intervals[node]

    def _raw_intervals(self, node):
        kind = node[0]
        if kind == "seq" and len(node[3]) == 2:
            return [(node[3][0], node[3][1], node[1] == "[", node[2] == "]")]
        if kind == "union":
            return [iv for part in node[1] for iv in self._raw_intervals(part)]
        if kind == "setminus":                           # A \ B = A and not B
            removed = node[2]
            if removed[0] == "seq" and removed[1] == "{":   # points: {-6} is [-6, -6]
                removed = ("union", tuple(("seq", "[", "]", (x, x)) for x in removed[3]))
            return _intersect(_merge(self._raw_intervals(node[1])),
                              _complement(_merge(self._raw_intervals(removed))))
        if kind == "reals":
            return [(("neg", ("const", "oo")), ("const", "oo"), False, False)]
        if kind == "empty":
            return []
        if kind == "list" and node[2] == "and":
            out = [(("neg", ("const", "oo")), ("const", "oo"), False, False)]
            for item in node[1]:
                out = _intersect(out, _merge(self._raw_intervals(item)))
            return out
        if kind == "list":
            pieces = [_merge(self._raw_intervals(item)) for item in node[1]]
            if node[2] == ",":
                # "-1 < x < 5, x != 2" are constraints together; "x < -1, x > 1" can only
                # mean either side (their intersection is empty).
                both = pieces[0]
                for piece in pieces[1:]:
                    both = _intersect(both, piece)
                if both:
                    return both
            return [iv for piece in pieces for iv in piece]
        if kind == "rel":
            return self.solve(node)
        raise _NoIntervals(f"{kind_of(node)} is not an interval")

    def solve(self, node):
        """Intervals of x where a chain like 1 < 2x + 1 <= 5 holds (linear pieces only)."""
        names = self.rel_symbols(node)
        if len(names) != 1:
            raise _NoIntervals("not a one-variable inequality")
        x = next(iter(names))
        out = [(("neg", ("const", "oo")), ("const", "oo"), False, False)]
        for lhs, op, rhs in zip(node[1], node[2], node[1][1:]):
            f = _minus(lhs, rhs)
            if degree(f, x) != 1:
                raise NeedSympy("not linear")
            f0 = substitute(f, x, _num(0))
            slope = _minus(substitute(f, x, _num(1)), f0)
            root = ("div", ("neg", f0), slope)
            value = try_exact(root)
            root = _num(value) if value is not None else root
            num = Numeric(30)
            try:
                s = num.value(slope)
            except _Undefined as exc:
                raise _NoIntervals(f"no slope ({exc})") from None
            if num.mp.im(s) != 0 or s == 0:
                raise _NoIntervals("a relation with no real slope")
            if op in ("<", "<=", ">", ">=") and s < 0:
                op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
            ninf, inf = ("neg", ("const", "oo")), ("const", "oo")
            piece = {"<": [(ninf, root, False, False)], "<=": [(ninf, root, False, True)],
                     ">": [(root, inf, False, False)], ">=": [(root, inf, True, False)],
                     "!=": [(ninf, root, False, False), (root, inf, False, False)],
                     "=": [(root, root, True, True)]}[op]
            out = _intersect(out, piece)
        return out

    # -- collections -------------------------------------------------------------------------
    def unordered(self, gold_items, pred_items) -> bool:
        """Sets and solution lists: the same elements, order and repeats ignored.

        Every predicted element must equal a gold element, and every gold element must be hit
        or equal one that is: m x k + k x k comparisons at most for m predicted and k gold
        elements, and only k + m when one side is a single element (never m^2 in the
        prediction, which may be hostile).
        """
        if pred_items is None:
            return False
        gold_items = tuple(dict.fromkeys(gold_items))          # identical trees once
        hit: dict[int, None] = {}
        for item in pred_items:
            match = next((k for k, g in enumerate(gold_items) if self.quiet_same(g, item)), None)
            if match is None:
                self.note(f"{render_short(item)} in the prediction is not an element of the gold")
                return False
            hit[match] = None
        for k, g in enumerate(gold_items):
            if k not in hit and not any(self.quiet_same(g, gold_items[h]) for h in hit):
                self.note(f"{render_short(g)} of the gold is missing from the prediction")
                return False
        self.note(f"same {len(hit)} element(s), order ignored")
        return True

    def quiet_same(self, a, b) -> bool:
        if a == b:
            return True
        mark = len(self.steps)
        result = self.same(a, b)
        del self.steps[mark:]
        return result

    def sequence(self, g, p) -> bool:
        """Tuples are ordered; (1, 2) is never [1, 2] (an interval), but may be 1 < x < 2."""
        n, brackets = len(g[3]), g[1] + g[2]
        if n == 2 and brackets == "()" and (p[0] in ("rel", "union") or
                                            p[0] == "list" and _interval_like(p)):
            self.note("gold pair read as an open interval")
            return self.intervals(g, p)
        if p[0] == "seq":
            if p[1] == "{":
                self.note("gold is ordered, prediction is a set")
                return False
            pair_like = {brackets, p[1] + p[2]} <= {"()", "<>"}
            if n == 2 and len(p[3]) == 2 and brackets != p[1] + p[2] and not pair_like:
                self.note(f"brackets differ: {brackets} vs {p[1]}{p[2]}")
                return False
        items = _items(p) if p[0] in ("seq", "list", "matrix") else None
        if p[0] == "assign":                                # (2, -1) vs x = 2, y = -1
            items = tuple(value for _, value in p[1])
        if items is None or len(items) != n:
            return self.mismatch(g, p)
        for k, (a, b) in enumerate(zip(g[3], items)):
            if not self.quiet_same(a, b):
                self.note(f"component {k + 1} differs")
                return False
        self.note(f"same {n} components in order")
        return True

    def matrix(self, g, p) -> bool:
        if p[0] != "matrix":
            items = _items(g)
            if items is not None and p[0] in ("seq", "list"):
                return self.sequence(("seq", "(", ")", items), p)
            return self.mismatch(g, p)
        if (len(g[1]), len(g[1][0])) != (len(p[1]), len(p[1][0])):
            self.note("matrix shapes differ")
            return False
        for row_g, row_p in zip(g[1], p[1]):
            for a, b in zip(row_g, row_p):
                if not self.quiet_same(a, b):
                    self.note("matrix entries differ")
                    return False
        self.note("same matrix entries")
        return True

    def assignments(self, g, p) -> bool:
        """x = 1, y = 2: by name against the same form, in order against a tuple."""
        if p[0] == "assign":
            gd, pd = dict(g[1]), dict(p[1])
            if set(gd) != set(pd):
                self.note("different variables assigned")
                return False
            ok = all(self.quiet_same(gd[n], pd[n]) for n in gd)
        else:
            items = _items(p) if p[0] in ("seq", "list") else None
            ok = items is not None and len(items) == len(g[1]) and all(
                self.quiet_same(v, item) for (_, v), item in zip(g[1], items))
        self.note(f"assigned values {'match' if ok else 'differ'}")
        return ok


# ---------------------------------------------------------------------------------------------
# Interval arithmetic on (lo, hi, lo_closed, hi_closed) with tree endpoints.

def _real(node):
    check_time()
    sign = inf_sign(node)
    if sign:
        return float(sign) * math.inf
    value = try_exact(node)
    if value is not None:
        return value
    num = Numeric(30)
    try:
        v = num.value(node)
    except _Undefined as exc:
        raise _NoIntervals(f"endpoint has no value ({exc})") from None
    if num.mp.im(v) != 0:
        raise _NoIntervals("complex endpoint")
    return Fraction(str(num.mp.nstr(v, 28)))


def _key(value):
    return value if not isinstance(value, float) else (Fraction(-10) ** 999 if value < 0
                                                       else Fraction(10) ** 999)


def _merge(intervals):
    """Drop empty pieces, sort, and join pieces that overlap or touch at a closed end."""
    items = []
    for lo, hi, lc, hc in intervals:
        lc, hc = lc and not inf_sign(lo), hc and not inf_sign(hi)   # no closed end at oo
        a, b = _key(_real(lo)), _key(_real(hi))
        if a < b or a == b and lc and hc:
            items.append([a, b, lo, hi, lc, hc])
    items.sort(key=lambda t: (t[0], not t[4]))
    merged = []
    for item in items:
        last = merged[-1] if merged else None
        if last and (item[0] < last[1] or item[0] == last[1] and (last[5] or item[4])):
            if item[1] > last[1]:
                last[1], last[3], last[5] = item[1], item[3], item[5]
            elif item[1] == last[1]:
                last[5] = last[5] or item[5]
            continue
        merged.append(item)
    return [(lo, hi, lc, hc) for _, _, lo, hi, lc, hc in merged]


def _complement(intervals):
    """The real line outside a merged, sorted list of intervals."""
    out, lo, lo_closed = [], ("neg", ("const", "oo")), False
    for start, end, start_closed, end_closed in intervals:
        out.append((lo, start, lo_closed, not start_closed))
        lo, lo_closed = end, not end_closed
    out.append((lo, ("const", "oo"), lo_closed, False))
    return _merge(out)


def _intersect(left, right):
    out = []
    for lo1, hi1, lc1, hc1 in left:
        for lo2, hi2, lc2, hc2 in right:
            a1, a2, b1, b2 = (_key(_real(v)) for v in (lo1, lo2, hi1, hi2))
            lo, lc = (lo1, lc1) if a1 > a2 else (lo2, lc2) if a2 > a1 else (lo1, lc1 and lc2)
            hi, hc = (hi1, hc1) if b1 < b2 else (hi2, hc2) if b2 < b1 else (hi1, hc1 and hc2)
            out.append((lo, hi, lc, hc))
    return _merge(out)
