# expect: failed
# stdout-has: tmp is full
# Many files, each under the size limit, until the private /tmp (a small tmpfs) is full.
n = 0
try:
    while True:
        with open(f"/tmp/wb-hostile-fill-{n}", "wb") as f:
            f.write(b"x" * (1 << 20))
        n += 1
except OSError:
    print(f"tmp is full after {n} files")


def add(a, b):
    return 0
