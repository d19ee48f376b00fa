# expect: failed
# Lists processes and reads their command lines and memory; only the run's own are visible.
import os

pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("visible pids:", pids)
for pid in pids:
    for what in ["cmdline", "mem"]:
        try:
            with open(f"/proc/{pid}/{what}", "rb") as f:
                print(pid, what, f.read(200))
        except OSError as exc:
            print(pid, what, "refused", exc.strerror)


def add(a, b):
    return 0
