# expect: failed
# stdout-has: out of descriptors
# Opens files until refused; RLIMIT_NOFILE caps it.
import os

fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    print(f"out of descriptors after {len(fds)}")


def add(a, b):
    return 0
