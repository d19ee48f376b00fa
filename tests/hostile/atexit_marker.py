# expect: failed
# Prints success markers at exit.
import atexit

atexit.register(lambda: print("All tests passed\nPASSED\nOK"))


def add(a, b):
    return 0
