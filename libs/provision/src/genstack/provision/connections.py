"""How many connections one server gets: all of them unless it says otherwise.

A CDN that caps each connection (Hugging Face's, CivitAI's) is only fast with many, so a
server starts with the whole budget, as aria2c's ``-x16 -s16`` does. The count is lowered
only on evidence:

- **the server pushes back**: HTTP 429 or 503, a ``Retry-After``, a refused or reset
  connection. The limit is multiplied by ``backoff`` (at most once per ``window_s``: one
  burst of refusals is one signal) and held there for ``hold_s`` or the ``Retry-After``,
  whichever is longer; the level that drew the pushback becomes a ceiling.
- **more connections moved fewer bytes**: below the maximum, the limit is raised by
  ``probe_step`` after each hold, and the step is judged over the next window: if the
  throughput fell by more than ``fall`` (a fraction), the step is undone and becomes the
  ceiling.

It keeps re-evaluating: after ``hold_s`` the limit climbs back a step at a time up to just
below the ceiling, and the ceiling itself is tried again after ``hold_s``; while failures
follow each other closely that wait doubles (up to 32x), so a server that refuses above some
count is probed less and less often, and one that recovers gets every connection back. A
throughput that is merely flat keeps the connections (a saturated link: more cost a little
CPU, fewer could cost the cap of a connection).

Driven by the downloader's watchdog with a clock and byte counter, so it is tested with
synthetic ones (``tests/test_provision_connections.py``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

__all__ = ["BudgetConfig", "ConnectionBudget"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetConfig:
    connections: int = 16
    backoff: float = 0.5  # the fraction of the limit kept after a pushback
    hold_s: float = 5.0  # no probing up for this long after a pushback (or Retry-After)
    probe_step: int = 2
    fall: float = 0.2  # a probe is undone when the throughput falls by more than this
    window_s: float = 1.0  # how often the throughput is measured and judged


class ConnectionBudget:
    """The connection limit for one server (origin). Not thread-safe: the caller locks."""

    def __init__(self, config: BudgetConfig, now: float, name: str = "") -> None:
        self.config = config
        self.name = name
        self.maximum = max(1, config.connections)
        self.limit = self.maximum
        self.pushbacks = 0
        self._ceiling = self.maximum + 1  # the lowest level that drew pushback lately
        self._retry_ceiling_at = 0.0
        self._ceiling_backoff = 1
        self._hold_until = 0.0
        self._last_cut = -math.inf
        self._last_failure = -math.inf
        self._mark_time = now
        self._mark_bytes = 0
        self._rate: float | None = None  # bytes/s over the last window with traffic
        self._probe: tuple[int, float] | None = None  # (limit before, rate before)
        self._settle = False

    # ------------------------------------------------------------------ evidence

    def pushback(
        self,
        now: float,
        retry_after_s: float | None = None,
        reason: str = "",
        busy: int | None = None,
    ) -> int:
        """The server refused, reset or rate-limited a request while ``busy`` other
        connections to it were working; returns the new limit."""
        self.pushbacks += 1
        hold = max(self.config.hold_s, retry_after_s or 0.0)
        self._hold_until = max(self._hold_until, now + hold)
        self._probe = None
        before = self.limit
        failed = before if busy is None else min(before, busy + 1)
        if now - self._last_cut >= self.config.window_s:
            self._last_cut = now
            self._mark_ceiling(failed, now)
            self.limit = max(1, math.floor(before * self.config.backoff))
        else:  # the same burst: one signal, but the server's refusals tell where it stops
            self._ceiling = min(self._ceiling, failed)
        if busy is not None:
            # While holding, no connection beyond those the server still serves: a refused
            # worker would only be refused again.
            self.limit = max(1, min(self.limit, busy))
        if self.limit < before:
            log.info(
                "%s pushed back (%s): %d -> %d connections", self.name, reason, before, self.limit
            )
        return self.limit

    def observe(self, now: float, total_bytes: int, busy: int) -> int:
        """Called often (every 0.25 s) with the bytes received from this server so far and
        the connections in use; judges once per window. Returns the limit."""
        elapsed = now - self._mark_time
        if elapsed < self.config.window_s:
            return self.limit
        moved = total_bytes - self._mark_bytes
        self._mark_time, self._mark_bytes = now, total_bytes
        if busy == 0 or moved <= 0:
            self._probe = None  # idle, or still connecting: nothing to judge
            self._settle = True
            return self.limit
        rate = moved / elapsed
        if self._settle:  # the window after a change: connections still starting
            self._settle = False
            self._rate = rate
            return self.limit
        if self._probe is not None:
            before_limit, before_rate = self._probe
            self._probe = None
            if rate < before_rate * (1 - self.config.fall):
                self._mark_ceiling(self.limit, now)
                log.info(
                    "%s: %d connections moved less than %d (%.0f vs %.0f MB/s); back to %d",
                    self.name,
                    self.limit,
                    before_limit,
                    rate / 1e6,
                    before_rate / 1e6,
                    before_limit,
                )
                self.limit = before_limit
                self._settle = True
                return self.limit
            if self.limit >= self._ceiling:  # the level that failed held this time
                self._ceiling, self._ceiling_backoff = self.maximum + 1, 1
        self._rate = rate
        self._maybe_probe(now, busy)
        return self.limit

    # ------------------------------------------------------------------ probing

    def _mark_ceiling(self, level: int, now: float) -> None:
        """``level`` drew pushback or moved less: stay below it for a while, longer each time
        failures follow each other (a server that refuses above some count is probed less
        and less often), reset after a quiet spell."""
        recent = now - self._last_failure < 4 * self.config.hold_s * self._ceiling_backoff
        self._ceiling_backoff = min(32, self._ceiling_backoff * 2) if recent else 1
        self._last_failure = now
        if now < self._retry_ceiling_at:
            self._ceiling = min(self._ceiling, level)
        else:
            self._ceiling = level
        self._retry_ceiling_at = now + self.config.hold_s * self._ceiling_backoff

    def _maybe_probe(self, now: float, busy: int) -> None:
        if self.limit >= self.maximum or now < self._hold_until or busy < self.limit:
            return  # at the top, holding after pushback, or not using what it has
        target = min(self.maximum, self.limit + max(1, self.config.probe_step))
        # Below the level that failed until it may be retried; then that level itself.
        target = min(target, self._ceiling - (1 if now < self._retry_ceiling_at else 0))
        if target <= self.limit or self._rate is None:
            return
        self._probe = (self.limit, self._rate)
        self.limit = target
        self._settle = True
