# expect: failed
# tests: assert add(1, 2) == 3\nassert add([1], [2]) == [1, 2]\nassert add("a", "b") == "ab"\nassert add((1,), (2,)) == (1, 2)
# Class 2: equality liars of many shapes: subclasses of int, str, list and tuple with their own
# __eq__, an __eq__ that answers honestly only to a bare object() probe, containers of liars, a
# structure that contains itself.
class Int(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__


class Str(str):
    def __eq__(self, other):
        return True
    __hash__ = str.__hash__


class List(list):
    def __eq__(self, other):
        return True


class Tuple(tuple):
    def __eq__(self, other):
        return True
    __hash__ = tuple.__hash__


class ProbeAware:
    def __eq__(self, other):
        return type(other) is not object
    __hash__ = object.__hash__


def add(a, b):
    if isinstance(a, int):
        return Int(0)
    if isinstance(a, str):
        return Str("")
    if isinstance(a, list):
        loop = [ProbeAware()]
        loop.append(loop)
        return List(loop)
    return Tuple((ProbeAware(), ProbeAware()))
