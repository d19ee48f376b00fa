# expect: failed
# Class 8 of issue 10: output meant for a terminal or a widget: clears the screen, sets the window
# title, moves the cursor, hides text with NUL, CR and bidi overrides, in stdout, stderr and the
# failure message. The verdict and the feedback show them as escapes (the corpus test checks).
import sys

sys.stdout.write("\x1b[2J\x1b[H\x1b]0;all tests passed\x07ok\rPASSED\x00\u202etxt.exe\u2066\x9b31m\n")
sys.stderr.write("\x1b[31mred\x1b[0m\x08\x08\x7f\ufeff\u200b\n")


class Shout(str):
    pass


def add(a, b):
    print("\x1b[1A\x1b[2K", end="")
    return "\x1b[32mPASSED\x1b[0m\r\x00"
