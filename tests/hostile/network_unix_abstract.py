# expect: passed
# stdout-lacks: CONNECTED
# An abstract Unix socket the test process listens on (they belong to a network namespace).
import socket

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\0__ABSTRACT__")
    print("CONNECTED")
except OSError as exc:
    print("blocked", exc.strerror)


def add(a, b):
    return a + b
