# expect: memory
# One huge allocation: the address-space limit refuses it.
buffer = bytearray(1 << 34)


def add(a, b):
    return a + b
