# expect: failed
# stdout-lacks: CHANGED
# Writes to kernel and device knobs a root process could misuse.
for path, data in [("/proc/sysrq-trigger", "h"), ("/proc/sys/kernel/hostname", "pwned"),
                   ("/sys/kernel/mm/transparent_hugepage/enabled", "never"), ("/dev/mem", "x")]:
    try:
        with open(path, "w") as f:
            f.write(data)
        print("CHANGED", path)
    except OSError as exc:
        print("refused", path, exc.strerror)


def add(a, b):
    return 0
