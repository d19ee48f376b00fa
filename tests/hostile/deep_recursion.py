# expect: runtime_error
# Unbounded recursion inside the function under test: RecursionError, a crash of that test.
def add(a, b):
    return add(a, b)
