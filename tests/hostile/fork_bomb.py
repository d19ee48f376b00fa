# expect: timeout
# The classic: fork forever. RLIMIT_NPROC on the run's own uid caps it; the wall clock ends it.
import os

while True:
    try:
        os.fork()
    except OSError:
        pass
