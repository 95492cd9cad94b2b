"""The periods during which a server's software version or encryption key was out of sync, kept
up to date while an episode pass feeds the log (reports: `EpisodeBuilder(track_sync=True)`).

The rules are the view's (`domain.rules`): the references are drawn from the current components
(from all of them when none is current), and a server is out of sync when a component of it
reports something other than the reference. Judging every server again after every event that
could matter made a report O(events x servers) (issue #17: 43 s over 100k events whose versions
changed every batch, against 1.6 s for a what-if). `SyncTracker` reaches the same verdicts with
work in proportion to what an event changed:
- the counts the references are chosen from (as `rules.count_for_references` keeps them, over
  the current components and over all) change only for the components an event touched, and
  only in the part that changed (version, key, current or not);
- the references are chosen again (`rules.choose_references`) only when a count that changed
  could have moved them: not while each reference still leads by a strict margin;
- the servers judged again are the ones an event touched and, when a reference moved, the ones
  with a component reporting the old or the new reference: any other component compared unequal
  to both and still does (an index from each reported value to the servers reporting it).
A property test (tests/unit/test_episodes.py) checks it against the re-check of every server on
random logs; `bench.reports_churn` measures both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import rules
from domain.state import ClusterState, ComponentState

Key = tuple[str, str]  # (server, component)
Version = tuple[str, str]  # (product, version)
# A key fingerprint with the product it is judged within (None: the cluster-wide reference).
ProductKey = tuple[str | None, str]
# What one component adds to the counts: its version and key fingerprint (None: not reported,
# never compared), and whether it is current. A component not in the state adds nothing.
Reported = tuple[Version | None, ProductKey | None, bool]
NOTHING: Reported = (None, None, False)
JUDGES = ((rules.version_in_sync, "version"), (rules.key_in_sync, "key"))


@dataclass(slots=True)
class SyncPeriod:
    server: str
    kind: str  # "version" or "key"
    start: datetime
    end: datetime | None = None
    opened_position: int | None = None  # None: already out of sync where the pass began
    closed_position: int | None = None

    def overlap(self, since: datetime, until: datetime) -> float:
        start, end = max(self.start, since), min(self.end or until, until)
        return max(0.0, (end - start).total_seconds())

    def overlaps(self, since: datetime, until: datetime) -> bool:
        return self.start < until and (self.end is None or self.end > since)


class SyncTracker:
    """Tell it each component that changed (`update`), then `evaluate` when periods may open or
    close; `periods` lists them in the order they opened, `open` holds the ongoing ones."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], SyncPeriod] = {}  # (server, kind) -> ongoing period
        self.periods: list[SyncPeriod] = []
        # The counts choose_references takes (product -> version -> n, (product, fingerprint)
        # -> n), over the current components and over all of them.
        self._current: tuple[dict[str, dict[str, int]], dict[ProductKey, int]] = ({}, {})
        self._everyone: tuple[dict[str, dict[str, int]], dict[ProductKey, int]] = ({}, {})
        self._current_count = 0  # current components, whether they report anything or not
        self._reported: dict[Key, Reported] = {}
        self._servers_by_version: dict[Version, dict[str, int]] = {}
        self._servers_by_key: dict[ProductKey, dict[str, int]] = {}
        self._refs = rules.choose_references({}, {})
        self._refs_from_current = False  # which counts `_refs` was chosen from
        self._counts_changed = False
        self._products_changed: set[str] = set()  # whose version counts changed since then
        self._keys_changed = False
        self._pending: set[str] = set()  # servers to judge again at the next evaluation

    def update(self, key: Key, component: ComponentState | None, current: bool) -> None:
        """`component` as the fold left it (None: not in the state), and whether it is current."""
        new = NOTHING
        if component is not None:
            product, reported = component.product, component.product_version
            fingerprint = component.encryption_key_fingerprint
            new = (
                (product, reported) if product and reported else None,
                (product or None, fingerprint) if fingerprint else None,
                current,
            )
        old = self._reported.get(key, NOTHING)
        if new == old:
            return
        if new == NOTHING:
            del self._reported[key]
        else:
            self._reported[key] = new
        (old_version, old_key, was_current), (new_version, new_key, is_current) = old, new
        server = key[0]
        if was_current != is_current:
            self._current_count += 1 if is_current else -1
            self._counts_changed = True
        if old_version != new_version or was_current != is_current:
            for version, step, counted in (
                (old_version, -1, was_current),
                (new_version, 1, is_current),
            ):
                if version is not None:
                    if old_version != new_version:
                        _count_version(self._everyone[0], version, step)
                        _count_server(self._servers_by_version, version, server, step)
                    if counted:
                        _count_version(self._current[0], version, step)
                    self._products_changed.add(version[0])
                    self._counts_changed = True
        if old_key != new_key or was_current != is_current:
            for product_key, step, counted in (
                (old_key, -1, was_current),
                (new_key, 1, is_current),
            ):
                if product_key is not None:
                    if old_key != new_key:
                        _count(self._everyone[1], product_key, step)
                        _count_server(self._servers_by_key, product_key, server, step)
                    if counted:
                        _count(self._current[1], product_key, step)
                    self._keys_changed = self._counts_changed = True
        if old_version != new_version or old_key != new_key:
            self._pending.add(server)

    def evaluate(self, state: ClusterState, now: datetime | None, position: int | None) -> None:
        """Open and close periods at `now` (`position` None: the state the pass began with)."""
        if self._counts_changed:
            self._counts_changed = False
            refs = self._choose_references()
            if refs is not self._refs and refs != self._refs:
                self._pending |= self._reporting_moved(self._refs, refs)
                self._refs = refs
        if not self._pending:
            return
        refs, servers, open_, opening = self._refs, state.servers, self.open, []
        for name in self._pending:
            server = servers.get(name)
            for in_sync, kind in JUDGES:
                out = server is not None and in_sync(server, refs) is False
                period = open_.get((name, kind))
                if out and period is None:
                    opening.append((name, kind))
                elif not out and period is not None:
                    del open_[(name, kind)]
                    period.end = now
                    period.closed_position = position
        self._pending.clear()
        for name, kind in sorted(opening):
            assert now is not None  # servers out of sync: some event was recorded
            period = SyncPeriod(name, kind, now, opened_position=position)
            open_[(name, kind)] = period
            self.periods.append(period)

    def _choose_references(self) -> rules.References:
        """`rules.choose_references` over the counts in force, skipped when the references in
        force still lead every count that changed by a strict margin (the count decides before
        any tie-break): while versions churn, most changes leave the references where they are.
        A change of the key counts always chooses again: keys rarely change, and each product's
        reference and the cluster-wide one are drawn from the same counts."""
        from_current = self._current_count > 0
        by_product, keys = self._current if from_current else self._everyone
        products, self._products_changed = self._products_changed, set()
        keys_changed, self._keys_changed = self._keys_changed, False
        refs = self._refs
        if (
            from_current == self._refs_from_current
            and all(_leads(by_product.get(p), refs.versions.get(p)) for p in products)
            and not keys_changed
        ):
            return refs
        self._refs_from_current = from_current
        if from_current:  # a product none of whose components is current: from all of them
            return rules.choose_references(by_product, keys, self._everyone[1])
        return rules.choose_references(by_product, keys)

    def _reporting_moved(self, old: rules.References, new: rules.References) -> set[str]:
        """Servers with a component reporting a reference that changed, old or new."""
        names: set[str] = set()
        for product in old.versions.keys() | new.versions.keys():
            was, now = old.versions.get(product), new.versions.get(product)
            if was != now:
                for version in (was, now):
                    if version is not None:
                        names.update(self._servers_by_version.get((product, version), ()))
        moved: list[tuple[str | None, str | None, str | None]] = [
            (None, old.fingerprint, new.fingerprint)
        ]
        for name in old.fingerprints.keys() | new.fingerprints.keys():
            moved.append((name, old.fingerprints.get(name), new.fingerprints.get(name)))
        for key_product, was_key, now_key in moved:
            if was_key != now_key:
                for reference in (was_key, now_key):
                    if reference is not None:
                        names.update(self._servers_by_key.get((key_product, reference), ()))
        return names


def _leads(counts: dict[str, int] | None, first: str | None) -> bool:
    """Whether `first` is counted more often than any other value in `counts`."""
    if counts is None or first is None:
        return False
    lead = counts.get(first)
    if lead is None:
        return False
    return all(n < lead or value == first for value, n in counts.items())


def _count(counts: dict, value, step: int) -> None:
    """Add `step` to a count; a count that drops to zero is deleted (as choose_references and
    count_for_references expect)."""
    n = counts.get(value, 0) + step
    if n:
        counts[value] = n
    else:
        del counts[value]


def _count_version(by_product: dict[str, dict[str, int]], version: Version, step: int) -> None:
    versions = by_product.get(version[0])
    if versions is None:
        versions = by_product[version[0]] = {}
    _count(versions, version[1], step)
    if not versions:
        del by_product[version[0]]


def _count_server(index: dict, value, server: str, step: int) -> None:
    servers = index.get(value)
    if servers is None:
        servers = index[value] = {}
    _count(servers, server, step)
    if not servers:
        del index[value]
