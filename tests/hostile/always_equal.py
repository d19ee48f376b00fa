# expect: failed
# Returns an object that claims to equal anything.
class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False


def add(a, b):
    return AlwaysEqual()
