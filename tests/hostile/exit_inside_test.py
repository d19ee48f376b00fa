# expect: runtime_error
# The function under test exits with status 0 when called.
import sys


def add(a, b):
    sys.exit(0)
