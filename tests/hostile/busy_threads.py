# expect: timeout
# Several spinning threads: CPU time adds up faster than wall time.
import threading


def spin():
    while True:
        pass


for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()


def add(a, b):
    return a + b


spin()
