# expect: failed
# stdout-lacks: WROTE OUTSIDE
# Leaves the working directory by relative paths.
import os

os.chdir("../../../..")
for name in ["wb-hostile-up", "etc/wb-hostile-up", "usr/wb-hostile-up"]:
    try:
        open(name, "w").write("x")
        print("WROTE OUTSIDE", os.path.abspath(name))
    except OSError as exc:
        print("refused", name, exc.strerror)


def add(a, b):
    return 0
