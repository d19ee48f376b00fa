# expect: failed
# tests: import math\nassert math.isclose(add(1, 2), 3)
# Replaces the math module itself in sys.modules.
import sys
import types

fake = types.ModuleType("math")
fake.isclose = lambda *args, **kwargs: True
sys.modules["math"] = fake


def add(a, b):
    return 0
