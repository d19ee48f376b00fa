"""The sympy path. Imported only inside a worker process (see ``verifiers._math_pool``).

The worker re-runs the same Judge on the same trees; where the in-process evidence was not
conclusive (a non-linear inequality, cancellation beyond 50 digits) it asks sympy: ``simplify``
and ``equals`` for scalars, ``solve_univariate_inequality`` for inequalities. The parent kills the
worker if it overruns its time, and the worker runs under a memory limit (RLIMIT_AS) and a CPU
limit per job, so even an orphaned worker stops.
"""
from __future__ import annotations

import os
import resource

import sympy

from verifiers._math_judge import Judge, free_symbols

_FUNCS = {"sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot,
          "sec": sympy.sec, "csc": sympy.csc, "asin": sympy.asin, "acos": sympy.acos,
          "atan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
          "exp": sympy.exp, "abs": sympy.Abs, "floor": sympy.floor, "ceil": sympy.ceiling,
          "max": sympy.Max, "min": sympy.Min, "binom": sympy.binomial, "gcd": sympy.gcd,
          "lcm": sympy.lcm, "sqrt": sympy.sqrt, "log": sympy.log}
CPU_SECONDS_PER_JOB = 30        # backstop if the parent is gone and nobody kills us


def to_sympy(node, symbols):
    """A scalar tree as a sympy expression (guards already passed in the parent)."""
    kind = node[0]
    if kind == "num":
        return sympy.Rational(node[1].numerator, node[1].denominator)
    if kind == "sym":
        return symbols[node[1]]
    if kind == "const":
        return {"pi": sympy.pi, "e": sympy.E, "i": sympy.I, "oo": sympy.oo}[node[1]]
    def conv(part):
        return to_sympy(part, symbols)

    if kind == "add":
        return sympy.Add(*map(conv, node[1]))
    if kind == "mul":
        return sympy.Mul(*map(conv, node[1]))
    if kind == "neg":
        return -conv(node[1])
    if kind == "div":
        return conv(node[1]) / conv(node[2])
    if kind == "pow":
        return sympy.Pow(conv(node[1]), conv(node[2]))
    if kind == "root":
        index = conv(node[2])
        if index.is_integer and index.is_odd:
            return sympy.real_root(conv(node[1]), index)
        return sympy.root(conv(node[1]), index)
    if kind == "fact":
        return sympy.factorial(conv(node[1]))
    if kind == "pct":
        return conv(node[1]) / 100
    if kind == "deg":
        return conv(node[1]) * sympy.pi / 180
    if kind == "fn":
        return _FUNCS[node[1]](*map(conv, node[2]))
    raise ValueError(f"no sympy form for {kind}")


def _symbols(*nodes, **assumptions):
    names = frozenset().union(*(free_symbols(n) for n in nodes))
    return {n: sympy.Symbol(n, **assumptions) for n in names}


class SympyJudge(Judge):
    """Judge whose undecided cases are settled by sympy instead of raising NeedSympy."""

    def undecided_scalar(self, g, p, why: str) -> bool:
        symbols = _symbols(g, p, positive=True)
        diff = to_sympy(g, symbols) - to_sympy(p, symbols)
        if sympy.simplify(diff) == 0:
            self.note(f"{why}; sympy simplify: difference is 0")
            return True
        same = diff.equals(0)
        self.note(f"{why}; sympy equals(0): {same}")
        return bool(same)

    def undecided_intervals(self, g, p) -> bool:
        symbols = _symbols(g, p, real=True)
        a, b = self.to_set(g, symbols), self.to_set(p, symbols)
        same = a == b or (a.symmetric_difference(b)).is_empty is True
        self.note(f"sympy sets: {a} vs {b}: {'equal' if same else 'not equal'}")
        return same

    def to_set(self, node, symbols):
        kind = node[0]
        if kind == "seq" and len(node[3]) == 2:
            lo, hi = (to_sympy(x, symbols) for x in node[3])
            return sympy.Interval(lo, hi, node[1] == "(", node[2] == ")")
        if kind == "union":
            return sympy.Union(*(self.to_set(part, symbols) for part in node[1]))
        if kind == "setminus":
            return sympy.Complement(self.to_set(node[1], symbols), self.to_set(node[2], symbols))
        if kind == "seq" and node[1] == "{":
            return sympy.FiniteSet(*(to_sympy(x, symbols) for x in node[3]))
        if kind == "reals":
            return sympy.S.Reals
        if kind == "empty":
            return sympy.S.EmptySet
        if kind == "list":
            sets = [self.to_set(item, symbols) for item in node[1]]
            return sympy.Intersection(*sets) if node[2] == "and" else sympy.Union(*sets)
        if kind == "rel":
            (name,) = self.rel_symbols(node)
            x = symbols[name]
            out = sympy.S.Reals
            ops = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge,
                   "=": sympy.Eq, "!=": sympy.Ne}
            for lhs, op, rhs in zip(node[1], node[2], node[1][1:]):
                relation = ops[op](to_sympy(lhs, symbols), to_sympy(rhs, symbols))
                out = out.intersect(sympy.solveset(relation, x, sympy.S.Reals))
            return out
        raise ValueError(f"no set form for {kind}")


def serve(read_fd: int, write_fd: int, memory_mb: int):
    """Worker loop: receive (gold, pred, judge options), send ('ok', outcome, steps) or ('error', ...)."""
    from multiprocessing.connection import Connection

    limit = memory_mb * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            gold, pred, options = inbox.recv()
        except (EOFError, OSError):
            return                                     # the parent is gone
        used = int(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = used + CPU_SECONDS_PER_JOB
        resource.setrlimit(resource.RLIMIT_CPU, (soft if hard < 0 else min(soft, hard), hard))
        judge = SympyJudge(**options)
        try:
            result = ("ok", judge.judge(gold, pred), tuple(judge.steps))
        except MemoryError:
            result = ("error", "memory limit reached in the sympy worker", tuple(judge.steps))
        except Exception as exc:                       # noqa: BLE001 - reported, never raised
            result = ("error", f"sympy failed: {type(exc).__name__}", tuple(judge.steps))
        try:
            outbox.send(result)
        except (OSError, ValueError):
            return
