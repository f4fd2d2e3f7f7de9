"""The one back-off of this provider: how long to wait after the n-th failure in a row.

Every layer that waits after a failure uses it (the docs page "Money", section "Retries, in one
place", lists the layers): the request core between attempts of one call, the worker's wait loop and the triggerer's
wait between polls, the shared Monid status poller after a failed cycle, and the Exa watcher.

Why not ``tenacity`` (Airflow's dependency, which the official hooks use): its ``Retrying`` owns the
loop, and none of ours is a plain "call until it succeeds" loop. The request core decides per
failure whether the request may be sent again at all (a paid POST that may have reached the API
never is: the error is re-classified as unclear instead), stops at the deadline of the wait it
serves, and counts its attempts in its messages; the polling loops continue after a success too.
Each of those would be a custom tenacity predicate around the few lines below, so the delays are
computed here and the loops stay where their money rules are written.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Longest wait between two polls of a run after failed polls (worker wait loop, status poller).
POLL_ERROR_CAP = 60.0


@dataclass(frozen=True)
class Backoff:
    """Delays that double from ``base`` up to ``cap``; a server's ``Retry-After`` wins when given.

    :param base: the delay after the first failure.
    :param cap: the longest delay.
    :param jitter: draw each delay from ``[d/2, d]`` (many clients that failed together then do not
        come back together); without it the delays are exact, as a polling interval is.
    :param retry_after_cap: the longest ``Retry-After`` honoured (``None``: as the server says).
    """

    base: float
    cap: float
    jitter: bool = False
    retry_after_cap: float | None = None

    @classmethod
    def for_polling(cls, poll_interval: float) -> Backoff:
        """A wait loop's: twice the interval after the first failed poll, doubling up to a minute."""
        return cls(base=2 * poll_interval, cap=max(POLL_ERROR_CAP, poll_interval))

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 for the first)."""
        if retry_after is not None:
            return retry_after if self.retry_after_cap is None else min(retry_after, self.retry_after_cap)
        ceiling = min(self.cap, self.base * 2.0 ** min(max(failures, 1) - 1, 30))
        return random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling


def worth_logging(failures: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... failure in a row: an outage does not flood the log."""
    return failures > 0 and failures & (failures - 1) == 0
