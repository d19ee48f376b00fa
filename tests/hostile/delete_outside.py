# expect: failed
# stdout-lacks: DELETED
# Tries to delete a file of the test process, the repository and system files.
import os
import shutil

for path in ["__CANARY__", "/etc/hostname", "/usr/bin/env"]:
    try:
        os.remove(path)
        print("DELETED", path)
    except OSError as exc:
        print("kept", path, exc.strerror)
try:
    shutil.rmtree(os.path.dirname("__CANARY__"))
    print("DELETED the directory")
except OSError as exc:
    print("kept the directory", exc.strerror)


def add(a, b):
    return 0
