"""The embedded channel layer: Channels' in-memory layer, with its expiry sweep run at most once a second.

``InMemoryChannelLayer`` walks every queued channel and every group member on each ``receive`` and
``group_send`` to drop what has expired (messages after ``expiry`` seconds, group
memberships after ``group_expiry``). With a desktop's worth of sockets that walk was the largest single
cost on the event loop's thread (a sixth of it at CC-nominal, ``bench/realtime.py``). Expiry is measured in
tens of seconds to a day, so sweeping once per ``SWEEP_SECONDS`` drops the same things at most that much
later.
"""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer


class SweepingInMemoryChannelLayer(InMemoryChannelLayer):
    SWEEP_SECONDS = 1.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._swept_at = float("-inf")

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < self.SWEEP_SECONDS:
            return
        self._swept_at = now
        super()._clean_expired()
