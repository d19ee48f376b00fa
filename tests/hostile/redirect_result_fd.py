# expect: runtime_error,failed
# Points the result channel at stdout and prints a forged record.
import os

os.dup2(1, 3)
print(repr(("", "done", None)))


def add(a, b):
    return 0
