# expect: timeout
# An infinite loop at import time: the wall clock / CPU limit must stop it.
def add(a, b):
    return a + b


while True:
    pass
