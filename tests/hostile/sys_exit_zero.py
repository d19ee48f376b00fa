# expect: runtime_error
# A wrong answer that exits with status 0 before any test runs.
import sys


def add(a, b):
    return 0


sys.exit(0)
