# expect: failed
# stdout-lacks: WROTE OUTSIDE
# Writes everywhere it can think of; only the private /tmp may take it, and that disappears.
import os

for folder in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"]:
    with open(os.path.join(folder, "wb-hostile-dropped"), "w") as f:
        f.write("left behind?")
for folder in [os.path.dirname("__CANARY__"), "/etc", "/usr/local/bin", "/root", "/", "/work"]:
    try:
        with open(os.path.join(folder, "wb-hostile-dropped"), "w") as f:
            f.write("escaped")
        print("WROTE OUTSIDE", folder)
    except OSError as exc:
        print("refused", folder, exc.strerror)
try:
    with open("__CANARY__", "a") as f:
        f.write("overwritten")
    print("WROTE OUTSIDE canary")
except OSError as exc:
    print("refused canary", exc.strerror)


def add(a, b):
    return 0
