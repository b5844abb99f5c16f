"""The clock the storage engine reads: anything with Twisted's ``seconds()`` (a reactor, a
test's ``Clock``), the wall clock by default, and the milliseconds Kafka counts in.
"""

from __future__ import annotations

import time


class SystemClock:
    """The wall clock behind the ``seconds()`` interface of Twisted's IReactorTime."""

    @staticmethod
    def seconds() -> float:
        return time.time()


def milliseconds(clock) -> int:
    """The time on ``clock`` in whole milliseconds, as Kafka's timestamps count."""
    return int(clock.seconds() * 1000)
