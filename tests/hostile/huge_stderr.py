# expect: runtime_error
# The same on stderr.
import sys

while True:
    sys.stderr.write("y" * 10_000)
