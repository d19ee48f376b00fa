# expect: passed
# stdout-lacks: ROOT
# Tries setuid(0), a new user namespace and mount(); none may work.
import ctypes
import os
import subprocess

try:
    os.setuid(0)
    print("ROOT via setuid")
except OSError as exc:
    print("setuid refused", exc.strerror)
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) == 0:               # CLONE_NEWUSER
    print("new user namespace (no power outside it)")
if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0:
    print("mounted")
out = subprocess.run(["sh", "-c", "id -u"], capture_output=True, text=True).stdout.strip()
print("ROOT shell" if out == "0" else f"shell uid {out}")


def add(a, b):
    return a + b
