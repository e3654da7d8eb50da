"""The daemon's upkeep of overrides (SPEC §5): it learns each pull request's fate from the
`pull_request` webhook and, at most once a minute per open override, from the API; it notices
TTLs that passed; it retries pull requests GitHub refused earlier; and it opens the pull
requests of drift it adopted. Units whose override must end get a targeted pass."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..followup import PullRequests
from ..gitsource import GitSource
from ..model import UnitId
from ..overrides import is_expired, list_overrides
from ..reconcile import PullRequestFate, Result
from ..records import Keys
from ..store import Store
from .metrics import Metrics

log = logging.getLogger("gitconf.daemon")


class OverrideUpkeep:
    def __init__(self, source: GitSource, store: Store, keys: Keys, branch: str,
                 metrics: Metrics, interval: float = 60.0):
        self.source, self.store, self.keys = source, store, keys
        self.branch, self.metrics, self.interval = branch, metrics, interval
        self._prs: PullRequests | None = None
        self._head: str | None = None
        self._next_check = 0.0

    def pull_requests(self, head: str) -> PullRequests:
        """One GitHub side for the daemon; settings follow the branch head, read only when a
        pull request needs them."""
        if self._prs is None:
            self._prs = PullRequests(self.source, self.store, self.keys,
                                     base_branch=self.branch, min_interval=self.interval,
                                     ref=head)
        return self._prs.at(head)

    def poke(self, number: int | None = None) -> None:
        """A `pull_request` webhook: look again at the next cycle, asking GitHub afresh."""
        self._next_check = 0.0
        if self._prs is not None:
            self._prs.forget()

    def due(self, head: str) -> set[UnitId]:
        """Units whose open override has ended (TTL passed, pull request merged or closed),
        checked at most every `interval` seconds unless poked; pending pull requests are
        retried on the way."""
        now = time.monotonic()
        if now < self._next_check:
            return set()
        self._next_check = now + self.interval
        records = list_overrides(self.store, self.keys)
        self.metrics.overrides_open.set(len(records))
        prs = self.pull_requests(head)
        for follow in prs.retry_pending(records):
            self._count(follow)
        due = set()
        for record in records:
            if is_expired(record) or _ended(prs.state(record)):
                due.add(record.unit)
        return due

    def after(self, result: Result, head: str) -> None:
        for follow in self.pull_requests(head).after(result):
            self._count(follow)
            log.info("override %s of %s: %s", follow.record.id, follow.record.unit,
                     follow.pull_request.url if follow.pull_request and follow.pull_request.url
                     else follow.note, extra={"unit": str(follow.record.unit)})
        for record in result.closed_overrides:
            log.info("override %s of %s closed as %s: %s", record.id, record.unit, record.state,
                     record.closed_reason, extra={"unit": str(record.unit)})
            if record.state == "expired":
                self.metrics.pull_requests.labels("closed").inc()
        self.metrics.drift.labels("override").inc(len(result.new_overrides))
        if result.new_overrides or result.closed_overrides:
            self._next_check = 0.0  # refresh the gauge soon

    def _count(self, follow: Any) -> None:
        if follow.pull_request is not None and follow.pull_request.number is not None:
            self.metrics.pull_requests.labels("opened").inc()
        elif follow.pending:
            self.metrics.pull_requests.labels("pending").inc()
        else:
            self.metrics.pull_requests.labels("failed").inc()


def _ended(fate: PullRequestFate | None) -> bool:
    """A pull request merged or closed: its override ends in a targeted pass. The answer's
    state is compared (the whole answer never equalled a state's name, and an ended pull
    request waited for a cycle that had something else to do)."""
    return fate is not None and fate.state in ("merged", "closed")
