# expect: failed
# tests: for a, b in [(1, 2), (2, 3)]:\n    assert add(a, b) == a + b
# An int subclass that equals everything, checked inside a loop.
class Sly(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def add(a, b):
    return Sly(0)
