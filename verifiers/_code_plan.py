"""Turn assert-style test code into steps the sandbox harness runs one by one.

A *case* is a top-level statement that contains an ``assert`` or is a bare call (``check(f)``,
``test_all()``); everything else (imports, definitions, assignments) is *setup*. HumanEval-style
tests (``def check(candidate): ...`` plus an entry point) are unrolled: the body of ``check`` runs
with ``candidate`` bound to the entry point, so each of its asserts counts as its own case; if the
body cannot run outside a function (``return``, ``yield``, ``global``), ``check(entry_point)`` is
one case. Every ``assert a == b`` becomes ``assert __wb_eq__(a, b, actual_is_left)``, so the report can
show expected and actual values. The steps run in the sandbox's tester process, never in the
program's: there the program's functions are stand-ins that return plain data, so ``==`` is
Python's own on builtin values (``_code_harness``).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_NOT_AT_MODULE_LEVEL = (ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.Global, ast.Nonlocal)


@dataclass(frozen=True)
class Step:
    kind: str       # "setup" or "case"
    source: str     # what the harness runs
    label: str      # what a report shows: the original line


def plan_tests(tests: str, entry_point: str | None = None) -> list[Step]:
    """Steps for ``tests``; raises ValueError when they do not parse or hold no case."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"the tests do not parse: {exc}") from exc
    body, lines = tree.body, tests.splitlines()
    check = next((s for s in body if isinstance(s, ast.FunctionDef) and s.name == "check"), None)
    if entry_point and check is not None and not any(_is_case(s) for s in body):
        steps = [_step(s, lines) for s in body if s is not check]
        arg = check.args.args[0].arg if len(check.args.args) == 1 else None
        if arg and _runs_at_module_level(check.body) and any(map(_is_case, check.body)):
            steps.append(Step("setup", f"{arg} = {entry_point}", ""))
            steps += [_step(s, lines) for s in check.body]
        else:
            steps.append(_step(check, lines))
            steps.append(Step("case", f"check({entry_point})", f"check({entry_point})"))
    else:
        steps = [_step(s, lines) for s in body]
    if not any(step.kind == "case" for step in steps):
        raise ValueError("the tests hold no case: no assert and no bare call such as check(f)")
    return steps


def _step(node: ast.stmt, lines: list[str]) -> Step:
    kind = "case" if _is_case(node) else "setup"
    first = lines[node.lineno - 1][node.col_offset:].rstrip()    # the statement's first line
    more = node.end_lineno > node.lineno or len(first) > 200
    label = first[:200] + (" ..." if more else "")
    return Step(kind, ast.unparse(_EqRewriter().visit(node)), label)


def _is_case(node: ast.stmt) -> bool:
    if isinstance(node, _SCOPES):                        # a definition is setup, even of a test
        return False
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return True
    return any(isinstance(n, ast.Assert) for n in _walk_scope(node))


def _runs_at_module_level(body: list[ast.stmt]) -> bool:
    return not any(isinstance(n, _NOT_AT_MODULE_LEVEL) for s in body for n in _walk_scope(s))


def _walk_scope(node: ast.AST):
    """Like ``ast.walk``, but not into nested functions, lambdas and classes."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        todo += [c for c in ast.iter_child_nodes(current) if not isinstance(c, _SCOPES)]


class _EqRewriter(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            left, right = test.left, test.comparators[0]
            actual_is_left = _has_call(left) or not _has_call(right)
            node.test = ast.Call(ast.Name("__wb_eq__", ast.Load()),
                                 [left, right, ast.Constant(actual_is_left)], [])
        return node


def _has_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(node))
