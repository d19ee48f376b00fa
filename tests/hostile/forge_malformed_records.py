# expect: runtime_error,failed
# Class 1: floods every descriptor with malformed records: broken JSON, wrong types, a frame header
# promising gigabytes, invalid UTF-8, deep nesting. The caller must answer with a verdict, never
# raise.
import os

JUNK = [b"\xff\xfe\x00garbage\n", b'["", 0, "case", "zero", "yes"]\n', b"[" * 100000 + b"\n",
        (1 << 31).to_bytes(4, "big") + b"{", (12).to_bytes(4, "big") + b'["ok", [[[[',
        (14).to_bytes(4, "big") + b'["ok", ["int"]]', b'["", 0, "done"]', b"\n" * 1000]
for fd in range(0, 64):
    for junk in JUNK:
        try:
            os.write(fd, junk)
        except OSError:
            pass


def add(a, b):
    return a + b
