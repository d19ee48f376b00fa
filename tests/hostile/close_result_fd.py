# expect: runtime_error
# A right answer that closes the harness's result channel: no pass without the final record.
import os

for fd in range(3, 64):
    try:
        os.close(fd)
    except OSError:
        pass


def add(a, b):
    return a + b
