# expect: runtime_error
# One file past RLIMIT_FSIZE: the write fails with "File too large".
with open("wb-hostile-big.bin", "wb") as f:
    f.write(b"x" * (100 << 20))
