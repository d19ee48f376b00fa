# expect: memory
# The allocation happens inside the function under test.
def add(a, b):
    return len(bytearray(1 << 34))
