# expect: runtime_error
# The function under test ends the process with status 0 when called.
import os


def add(a, b):
    os._exit(0)
