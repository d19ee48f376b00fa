# expect: failed,runtime_error
# tests: assert add(1, 2) == 3\nassert add(2, 2) == 4
# Class 1: looks for the harness's record writer in every frame and object of its interpreter and
# calls it with "passed" records for every case (this passed before the tests moved out). All
# it can reach is its own reply channel: answering 3 to every call is a constant program.
import gc
import os
import sys


def forge():
    found = []
    frame = sys._getframe(0)
    while frame is not None:
        found += [v for k, v in frame.f_locals.items() if k in ("emit", "channel", "link")]
        frame = frame.f_back
    found += [o for o in gc.get_objects() if callable(o) and getattr(o, "__name__", "") == "emit"]
    for emit in found:
        try:
            for i in range(3):
                emit("case", i, True, None, None, None, None)
            emit("done")
        except Exception:
            try:
                emit.send(["ok", 3])
            except Exception:
                pass
    os._exit(0)


def add(a, b):
    forge()
