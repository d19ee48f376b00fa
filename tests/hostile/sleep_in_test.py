# expect: timeout
# The hang is inside the function under test, after the harness started the tests.
import time


def add(a, b):
    time.sleep(10_000)
