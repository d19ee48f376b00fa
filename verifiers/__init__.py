"""Verifiers: the objects that decide whether a model's answer is right.

RL with verifiable rewards is only as good as its verifier, so verifiers are first-class here:

- ``verifiers.math`` -- sympy-based math answer checking, bounded in time and memory.
- ``verifiers.code`` -- run untrusted code in a limited child process against tests.

Names are imported lazily so that ``import verifiers`` stays cheap (the code checker does not need
sympy, the math verifier does not need the sandbox).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    # verifiers.math
    "verify_math": "math",
    "verify_math_many": "math",
    "math_reward": "math",
    "MathVerdict": "math",
    # verifiers.code
    "check_code": "code",
    "check_code_many": "code",
    "CodeVerdict": "code",
    "code_pass_reward": "code",
    "code_fraction_reward": "code",
    "execution_feedback": "code",
    "printable": "code",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'verifiers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
