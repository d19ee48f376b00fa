# expect: memory
# Memory taken a megabyte at a time until the limit.
hoard = []
while True:
    hoard.append(bytearray(1 << 20))
