# expect: timeout,memory,runtime_error
# The recursion limit lifted: frames pile up until memory, the C stack or the clock gives out.
import sys

sys.setrecursionlimit(10**8)


def down(n):
    return down(n + 1) + 1


down(0)
