# expect: failed
# tests: import math\nassert math.isclose(add(1, 2), 3)\nassert abs(add(2, 2) - 4) < 1e-9
# Class 3: patches math.isclose and abs, and restores them whenever anything looks (a profile and
# a trace hook on every thread), so a tamper check would see the originals.
import builtins
import math
import sys
import threading

real_isclose, real_abs = math.isclose, builtins.abs
fake = lambda *a, **k: True


def hook(frame, event, arg):
    looking = frame.f_code.co_name in ("_tampered", "check", "_snapshot")
    math.isclose = real_isclose if looking else fake
    builtins.abs = real_abs if looking else (lambda x: 0)
    return hook


sys.setprofile(hook)
sys.settrace(hook)
threading.setprofile(hook)
threading.settrace(hook)
math.isclose = fake


def add(a, b):
    return 0
