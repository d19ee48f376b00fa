# expect: failed
# stdout-has: uid=
# Starts a shell that prints its identity and environment (no secrets there, not root).
import subprocess

print(subprocess.run(["sh", "-c", "id; env"], capture_output=True, text=True).stdout)


def add(a, b):
    return 0
