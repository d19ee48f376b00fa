# expect: memory
# Tries to lift its own limits back up, then allocates.
import resource

for limit in [resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC,
              resource.RLIMIT_FSIZE]:
    try:
        resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("raised", limit)
    except (ValueError, OSError) as exc:
        print("refused", limit, exc)
hoard = bytearray(1 << 34)
