# expect: timeout,memory,runtime_error
# Each forked child allocates up to the per-process limit, then the parent waits forever.
import os
import time

for _ in range(8):
    if os.fork() == 0:
        try:
            hoard = bytearray((1 << 20) * 200)
        except MemoryError:
            pass
        time.sleep(60)
        os._exit(0)
time.sleep(60)
