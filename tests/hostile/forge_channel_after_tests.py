# expect: failed,runtime_error
# Class 1, forged results: takes over every descriptor it can, then writes "passed" records in
# every format it can think of from every hook that runs after the last test (atexit, __del__, a
# signal handler, a thread, stdout's flush) and guesses the nonce from anything it can read.
import atexit
import os
import signal
import sys
import threading

FORGED = []
for nonce in ["", "0" * 32]:
    for seq, record in enumerate([["started"], ["case", 0, True, None, None, None, None],
                                  ["done"]]):
        FORGED.append(repr((nonce, *record)) + "\n")
        FORGED.append(f'["{nonce}", {seq}, "{record[0]}"' + "".join(
            ", " + ("true" if f is True else "null" if f is None else str(f))
            for f in record[1:]) + "]\n")


def forge(*_):
    for fd in range(0, 64):
        for line in FORGED:
            try:
                os.write(fd, line.encode())
            except OSError:
                pass


class Ghost:
    def __del__(self):
        forge()


ghost = Ghost()
atexit.register(forge)
signal.signal(signal.SIGTERM, forge)
signal.signal(signal.SIGPIPE, forge)
threading.Thread(target=lambda: [forge() for _ in range(50)], daemon=True).start()
for fd in range(3, 16):
    try:
        os.dup2(1, fd)                       # the channel, if there were one here, is now stdout
    except OSError:
        pass


def add(a, b):
    forge()
    return 0
