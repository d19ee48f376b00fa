# expect: failed,runtime_error
# tests: assert abs(add(1, 2) - 3) < 1e-9
# Makes abs() return 0 for everybody, so `abs(got - want) < eps` would always hold.
import builtins

builtins.abs = lambda x: 0
builtins.len = lambda x: 0


def add(a, b):
    return 0
