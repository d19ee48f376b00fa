# expect: passed
# stdout-has: thread refused after
# Starts sleeping threads until refused: threads count against the same process cap.
import threading
import time

started = 0
try:
    for _ in range(10_000):
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        started += 1
except (RuntimeError, MemoryError, OSError):
    pass
print(f"thread refused after {started} threads")


def add(a, b):
    return a + b
