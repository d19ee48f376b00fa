# expect: timeout
# Sleeping uses no CPU: only the wall clock can stop it.
import time


def add(a, b):
    return a + b


time.sleep(10_000)
