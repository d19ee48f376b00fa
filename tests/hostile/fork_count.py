# expect: passed
# stdout-has: fork refused after
# Forks sleeping children until refused, and says how many it got (the test checks the cap).
import os
import time

children = 0
try:
    for _ in range(1000):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
except OSError:
    pass
print(f"fork refused after {children} children")


def add(a, b):
    return a + b
