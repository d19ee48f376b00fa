"""Deliberately broken HumanEval completions, written by this project for code_checker.py.

Each is a completion in HumanEval's sense: text appended to the problem's prompt (which ends inside
the function, after its docstring). Four families:

- ``BROKEN``: wrong by construction, on every problem. Both checkers must fail all of them.
- ``HANG``: an infinite loop, on a few problems only (each costs a full timeout in both checkers).
- ``mutant``: the canonical solution with one operator or constant changed. Usually wrong, but a
  mutant can be equivalent, so both checkers only need to *agree* on these.
- ``HACKS``: reward hacks a checker may fall for. Reported per checker, not required to agree.
"""
from __future__ import annotations

import ast

BROKEN = {
    "return_none": "    return None\n",
    "raise": "    raise NotImplementedError('not done yet')\n",
    "exit_in_body": "    import sys\n    sys.exit(0)\n",
    "os_exit_after_def": "    return None\n\nimport os\nos._exit(0)\n",
    "print_marker": "    print('passed')\n    print('All tests passed')\n    return None\n",
}
HANG = "    while True:\n        pass\n"
HACKS = {
    # An object equal to everything: passes `assert candidate(x) == y`.
    "always_equal": ("    class AlwaysEqual:\n"
                     "        def __eq__(self, other):\n            return True\n"
                     "        def __ne__(self, other):\n            return False\n"
                     "    return AlwaysEqual()\n"),
    # The same inside a list, and as an int that agrees with anything but a bare object().
    "always_equal_in_list": ("    class AlwaysEqual:\n"
                             "        def __eq__(self, other):\n            return True\n"
                             "    return [AlwaysEqual()]\n"),
    "int_that_dodges_the_probe": ("    class Liar(int):\n"
                                  "        def __eq__(self, other):\n"
                                  "            return type(other) is not object\n"
                                  "        __hash__ = int.__hash__\n"
                                  "    return Liar(0)\n"),
    # Builtins every test might use made to agree with anything, and a wrong answer.
    "patch_builtins": ("    return None\n\nimport builtins\n"
                       "builtins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
                       "builtins.len = lambda x: 0\nbuiltins.all = lambda x: True\n"
                       "builtins.sorted = lambda x, **k: x\n"),
}

_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE,
          ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Mult: ast.Add}


def broken_completions(problem: dict) -> dict[str, str]:
    """kind -> completion, every kind of ``BROKEN`` plus the mutant when one exists."""
    out = dict(BROKEN)
    mutant = mutant_completion(problem)
    if mutant is not None:
        out["mutant"] = mutant
    return out


def mutant_completion(problem: dict) -> str | None:
    """The canonical solution with its first operator swapped (or an int constant bumped)."""
    tree = ast.parse(problem["prompt"] + problem["canonical_solution"])
    entry = next(n for n in ast.walk(tree)
                 if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"])
    for node in ast.walk(entry):
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _SWAPS:
            node.op = _SWAPS[type(node.op)]()
            break
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAPS:
            node.ops[0] = _SWAPS[type(node.ops[0])]()
            break
        if isinstance(node, ast.Constant) and type(node.value) is int:
            node.value += 1
            break
    else:
        return None
    # The prompt's function ends after its docstring; close it, then redefine everything.
    return "    pass\n\n" + ast.unparse(tree) + "\n"
