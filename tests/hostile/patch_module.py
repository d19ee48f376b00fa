# expect: failed
# tests: import math\nassert math.isclose(add(1, 2), 3)
# Makes math.isclose() always true before the tests import math.
import math

math.isclose = lambda *args, **kwargs: True


def add(a, b):
    return 0
