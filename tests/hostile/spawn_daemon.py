# expect: passed
# A double-forked, setsid() daemon that would outlive the run: the test checks it is gone.
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)


def add(a, b):
    return a + b
