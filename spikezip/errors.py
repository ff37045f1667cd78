"""The base of every error whose message tells the user what to change.

``train.py``, ``convert.py`` and ``evaluate.py`` print such an error as its message alone
(:mod:`spikezip.cli`); any other exception is a bug and keeps its traceback.
"""


def few(names: list[str], shown: int = 3) -> str:
    """``['a', 'b', 'c'] and 2 more``: the first names of a list, for a message."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{names[:shown]}{more}"


class SpikeZIPError(Exception):
    """A wrong setting, a missing or unreadable file, a layer that cannot be converted, a
    diverged training: something the user can fix, named in the message."""
