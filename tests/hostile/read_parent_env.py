# expect: failed
# Looks for the parent's secret in every environment it can reach (the test checks the output).
import os

print("environ:", dict(os.environ))
for pid in ["self", "1", str(os.getppid())] + [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            print(pid, f.read())
    except OSError as exc:
        print(pid, "refused", exc.strerror)


def add(a, b):
    return 0
