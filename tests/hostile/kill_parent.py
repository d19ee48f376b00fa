# expect: failed,runtime_error
# Signals its parent, init, every process it can (kill -1) and its process group (itself).
import os
import signal

for target in [os.getppid(), 1, -1, -os.getpgid(0)]:
    try:
        os.kill(target, signal.SIGKILL)
        print("sent", target)
    except OSError as exc:
        print("refused", target, exc.strerror)


def add(a, b):
    return 0
