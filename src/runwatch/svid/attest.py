"""The enrichment step for reported SVIDs: verify on the sender's container, record as attested.

An SDK ``svid`` message becomes a ``sensor.notice`` event (``attrs.notice = identity.svid``)
whose ``pid``, ``pidns``/``vpid`` and ``cgroup_id`` come from the kernel's credentials of the
datagram, never from the message. :class:`Attestor` runs on it after the container
resolution and:

* rejects it unless the kernel named the sender (host pid, and its in-namespace pid checked
  against ``/proc``) and the message is at most ``max_age_s`` old;
* verifies it (:func:`runwatch.svid.verify.verify_svid`) against the trust bundle;
* leaves a valid SVID of a sender in no container ``unbound`` (counted, not recorded: the
  attested identity belongs to a container, the one the kernel puts the sender in);
* records a verified SVID on the sender's container in :class:`AttestedIds` until its
  ``not_after``: every later event of the container carries ``spiffe_id`` with
  ``spiffe_source = "attested"`` (attested overrides derived). When the container's derived
  id differs, the event says so (``svid_mismatch``, ``derived_spiffe_id``) and the default
  rule ``spiffe_attested_mismatch`` alerts.

A rejected SVID is never recorded; its event carries ``svid = rejected`` and the reason, and
the default rule ``spiffe_svid_rejected`` alerts. With no bundle to check against the SVID is
``unverified`` (counted, not alerted, not recorded). The chain and signature are dropped from
the event once checked (``svid_sha256`` names the leaf).

Thread safety: :class:`AttestedIds` takes a lock (the policy stage's binder reads it through
the workload join); :class:`Attestor` runs on the pipeline's consumer thread.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec

from runwatch.events import Container, Event
from runwatch.svid import (
    DERIVED_ATTR,
    SVID_CHAIN_ATTR,
    SVID_CLAIM_ATTR,
    SVID_MISMATCH_ATTR,
    SVID_MONO_ATTR,
    SVID_NOTICE,
    SVID_REASON_ATTR,
    SVID_SIG_ATTR,
    SVID_STATUS_ATTR,
)
from runwatch.svid.verify import Bundles, SvidRejected, VerifiedSvid, verify_svid


def is_svid_event(e: Event) -> bool:
    """Whether ``e`` is a reported SVID waiting for (or past) verification."""
    return e.kind == "sensor.notice" and e.attrs is not None and e.attrs.get("notice") == SVID_NOTICE


class AttestedIds:
    """The attested SVID of each container id, until it expires (newest report wins)."""

    def __init__(self, max_entries: int = 16384, clock: Callable[[], int] = time.time_ns) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._by_id: OrderedDict[str, VerifiedSvid] = OrderedDict()
        self._applied: dict[str, tuple[Container, Container]] = {}
        self._lock = threading.Lock()

    def record(self, container_id: str, svid: VerifiedSvid) -> None:
        with self._lock:
            self._by_id[container_id] = svid
            self._by_id.move_to_end(container_id)
            self._applied.pop(container_id, None)
            while len(self._by_id) > self.max_entries:
                old, _ = self._by_id.popitem(last=False)
                self._applied.pop(old, None)

    def lookup(self, container_id: str) -> VerifiedSvid | None:
        """The container's attested SVID, unless it expired (then it is forgotten)."""
        with self._lock:
            svid = self._by_id.get(container_id)
            if svid is not None and self.clock() > svid.not_after_ns:
                del self._by_id[container_id]
                self._applied.pop(container_id, None)
                return None
            return svid

    def apply(self, c: Container) -> Container:
        """``c`` with its attested SPIFFE ID, if it has one (the same object for the same input)."""
        svid = self.lookup(c.id)
        if svid is None:
            return c
        with self._lock:
            hit = self._applied.get(c.id)
            if hit is not None and hit[0] is c:
                return hit[1]
            out = msgspec.structs.replace(c, spiffe_id=svid.spiffe_id, spiffe_source="attested")
            self._applied[c.id] = (c, out)
            return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)


class Attestor:
    """Verifies reported SVIDs and records them (see the module). ``bundles`` None: none configured."""

    def __init__(self, bundles: Bundles | None = None, ids: AttestedIds | None = None, *, max_age_s: float = 300.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.bundles = bundles
        self.ids = ids if ids is not None else AttestedIds(clock=clock)
        self.max_age_ns = int(max_age_s * 1e9)
        self.clock = clock
        self.counters: dict[str, int] = {"reported": 0, "attested": 0, "rejected": 0, "unverified": 0,
                                         "unbound": 0, "mismatch": 0}
        self.rejected_by: dict[str, int] = {}
        self.last_rejection: str | None = None

    def __call__(self, e: Event, derived: Container | None) -> None:
        """Check the SVID of ``e`` (its container already resolved); ``derived``: the container
        with its facts and derived id only (what the workload join gives without attestation)."""
        attrs = e.attrs if e.attrs is not None else {}
        chain = attrs.pop(SVID_CHAIN_ATTR, None)
        sig = attrs.pop(SVID_SIG_ATTR, None)
        mono = attrs.pop(SVID_MONO_ATTR, None)
        if attrs.get(SVID_STATUS_ATTR) is not None:
            return  # checked already (a replayed or re-read event)
        self.counters["reported"] += 1
        claim = str(attrs.get(SVID_CLAIM_ATTR) or "")
        try:
            svid = self._verify(e, chain, sig, mono, claim)
        except SvidRejected as exc:
            status = "unverified" if exc.code == "no_bundle" else "rejected"
            self.counters[status] += 1
            if status == "rejected":
                self.rejected_by[exc.code] = self.rejected_by.get(exc.code, 0) + 1
                self.last_rejection = str(exc)
            attrs[SVID_STATUS_ATTR] = status
            attrs[SVID_REASON_ATTR] = str(exc)
            e.attrs = attrs
            return
        if e.container is None:  # a valid SVID of a host process: nothing to record it on
            self.counters["unbound"] += 1
            attrs[SVID_STATUS_ATTR] = "unbound"
            attrs[SVID_REASON_ATTR] = f"no_container: the sender (pid {e.pid}) is in no container"
            e.attrs = attrs
            return
        self.counters["attested"] += 1
        attrs[SVID_STATUS_ATTR] = "attested"
        attrs["svid_sha256"] = svid.sha256
        attrs["svid_not_after"] = svid.not_after_ns
        base = derived if derived is not None else e.container
        if base.spiffe_id and base.spiffe_source != "attested" and base.spiffe_id != svid.spiffe_id:
            self.counters["mismatch"] += 1
            attrs[SVID_MISMATCH_ATTR] = True
            attrs[DERIVED_ATTR] = base.spiffe_id
        e.attrs = attrs
        self.ids.record(e.container.id, svid)
        e.container = self.ids.apply(e.container)

    def _verify(self, e: Event, chain: object, sig: object, mono: object, claim: str) -> VerifiedSvid:
        if not isinstance(chain, list) or not isinstance(sig, str) or not all(isinstance(c, str) for c in chain):
            raise SvidRejected("malformed", "the event carries no certificate chain and signature")
        if e.pid <= 0 or e.pidns is None or e.vpid is None:
            raise SvidRejected("unverified_sender", "the kernel did not name the sending process")
        now = self.clock()
        if abs(now - e.time) > self.max_age_ns:
            raise SvidRejected("stale", f"the message is {abs(now - e.time) / 1e9:.0f}s old")
        if self.bundles is None:
            raise SvidRejected("no_bundle", "no trust bundle configured (--spiffe-bundle or --spiffe-socket)")
        return verify_svid(chain, sig, claim, pid=e.vpid, ns=e.pidns, mono=mono if isinstance(mono, int) else -1,
                           bundles=self.bundles, now=dt.datetime.fromtimestamp(now / 1e9, dt.UTC))

    def stats(self) -> dict[str, int]:
        return dict(self.counters)
