# expect: passed
# stdout-lacks: RESOLVED
# Name resolution and a bare UDP packet.
import socket

try:
    print("RESOLVED", socket.getaddrinfo("pypi.org", 443))
except OSError as exc:
    print("no dns", exc)
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))
    print("RESOLVED sent udp")
except OSError as exc:
    print("no udp", exc.strerror)


def add(a, b):
    return a + b
