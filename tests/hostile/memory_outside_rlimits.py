# expect: failed
# stdout-has: memfd refused
# stdout-has: namespace refused
# Class 4: memory no rlimit counts: a memfd file, a private tmpfs in a user namespace of its own,
# /dev/shm past the run's tmp size. Each is refused or bounded; kernel keyrings are refused too.
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
try:
    os.memfd_create("hoard")
    print("memfd allowed")
except OSError:
    print("memfd refused")
if libc.unshare(0x10000000 | 0x00020000) == 0:             # CLONE_NEWUSER | CLONE_NEWNS
    print("namespace allowed")
else:
    print("namespace refused")
print("keyctl", libc.syscall(250, 0, -4, 1))               # KEYCTL_GET_KEYRING_ID, create
try:
    with open("/dev/shm/hoard", "wb") as f:
        for _ in range(1024):
            f.write(b"x" * (1 << 20))
    print("shm 1 GiB written")
except OSError:
    print("shm bounded")


def add(a, b):
    return 0
