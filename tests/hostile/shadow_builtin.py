# expect: failed
# tests: assert abs(add(1, 2) - 3) < 1e-9
# Defines its own global abs(); the tests must still get the real one.
def abs(x):
    return 0


def add(a, b):
    return 0
