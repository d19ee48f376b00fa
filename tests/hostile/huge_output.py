# expect: runtime_error
# Prints without end: the output cap kills the run long before the clock.
while True:
    print("x" * 10_000)
