# expect: passed
# stdout-lacks: CONNECTED
# TCP to the internet and to a port the test process listens on at localhost.
import socket

for host, port in [("8.8.8.8", 53), ("1.1.1.1", 443), ("127.0.0.1", __PORT__)]:
    try:
        socket.create_connection((host, port), timeout=0.5)
        print("CONNECTED", host, port)
    except OSError as exc:
        print("blocked", host, port, exc.strerror)


def add(a, b):
    return a + b
