# expect: runtime_error
# The same with os._exit(0), which skips every finally and atexit.
import os


def add(a, b):
    return 0


os._exit(0)
