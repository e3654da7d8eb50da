"""Prometheus metrics of the daemon; every name has the `gitconf_` prefix and every label has a
small fixed set of values (no per-key or per-unit labels)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.reconcile_duration = Histogram(
            "gitconf_reconcile_duration_seconds",
            "Duration of every reconcile cycle, idle and failed ones included, by result "
            "(success, idle, error: the labels of gitconf_reconciles_total).", ["result"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                     30, 60),
            registry=r)
        self.reconciles = Counter("gitconf_reconciles_total",
                                  "Reconcile cycles by result (success, idle, error).",
                                  ["result"], registry=r)
        self.deploys = Counter("gitconf_deploys_total", "Unit deploys written.", registry=r)
        self.drift = Counter("gitconf_drift_events_total",
                             "Units changed in etcd by something other than gitconf, by what "
                             "was done (reverted, reported, override).", ["action"], registry=r)
        self.errors = Counter("gitconf_errors_total",
                              "Errors by kind (git, etcd, invalid, webhook, internal).",
                              ["kind"],
                              registry=r)
        self.last_success = Gauge("gitconf_last_success_timestamp_seconds",
                                  "Unix time of the last cycle that checked the branch and "
                                  "ended without error (idle cycles included).", registry=r)
        self.leader = Gauge("gitconf_leader", "1 while this replica holds the leader lease.",
                            registry=r)
        self.units = Gauge("gitconf_units", "Units by state after the last cycle "
                                            "(failed, pinned, drifted).", ["state"], registry=r)
        self.deployed = Gauge("gitconf_deployed_commit_info",
                              "The branch commit etcd was last reconciled to (one series).",
                              ["commit"], registry=r)
        self.overrides_open = Gauge("gitconf_overrides_open",
                                    "Open overrides (emergency fixes and adopted drift) not yet "
                                    "merged to Git.", registry=r)
        self.pull_requests = Counter("gitconf_pull_requests_total",
                                     "Follow-up pull requests by result (opened, pending, "
                                     "failed, closed).", ["result"], registry=r)
        self._commit: str | None = None
        for result in ("success", "idle", "error"):
            self.reconciles.labels(result)
            self.reconcile_duration.labels(result)
        for kind in ("git", "etcd", "invalid", "webhook", "internal"):
            self.errors.labels(kind)
        for action in ("reverted", "reported", "override"):
            self.drift.labels(action)
        for result in ("opened", "pending", "failed", "closed"):
            self.pull_requests.labels(result)

    def cycle(self, result: str, seconds: float) -> None:
        """One cycle ended (success, idle or error): counted and timed under the same label;
        a cycle without error is a success for `gitconf_last_success_timestamp_seconds`."""
        self.reconciles.labels(result).inc()
        self.reconcile_duration.labels(result).observe(max(0.0, seconds))
        if result != "error":
            self.last_success.set(time.time())

    def set_commit(self, commit: str) -> None:
        if commit != self._commit:
            if self._commit is not None:
                self.deployed.remove(self._commit)
            self.deployed.labels(commit).set(1)
            self._commit = commit

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
