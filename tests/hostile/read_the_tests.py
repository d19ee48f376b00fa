# expect: failed
# stdout-lacks: FOUND
# Class 3: looks for the test source and the expected values: its own memory (gc, linecache),
# every process's command line, descriptors and memory it can reach. None of it is there.
import gc
import linecache
import os

NEEDLE = "==" + " 3"                       # not in this file's own text
found = any(isinstance(o, str) and NEEDLE in o and o is not NEEDLE for o in gc.get_objects())
found |= any(NEEDLE in "".join(v[2]) for v in linecache.cache.values() if len(v) > 2)
for pid in filter(str.isdigit, os.listdir("/proc")):
    for name in ("cmdline", "environ", "fd/3", "fd/4", "fd/5"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                found |= NEEDLE.encode() in f.read(1 << 20)
        except OSError:
            pass
    try:
        with open(f"/proc/{pid}/mem", "rb") as f:
            f.read(1)
            found = True
    except OSError:
        pass
print("FOUND" if found else "nothing")


def add(a, b):
    return 0
