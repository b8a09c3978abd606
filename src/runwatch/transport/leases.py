"""Which worker consumes which partition: leases in a JetStream key-value bucket.

Each partition ``p`` has a durable pull consumer of its own (``<durable>-p<p>``); a worker
consumes a partition only while it holds the key ``p.<p>`` of the bucket ``<durable>-leases``,
whose entries expire ``lease_s`` after their last write (the bucket's TTL). Every
``lease_s / 3`` seconds a worker (:meth:`Leases.tick`):

1. writes its heartbeat ``w.<worker id>`` (expiring the same way), and counts the live workers;
2. renews the leases it holds (a compare-and-set on the revision it wrote last: a lease that
   expired and was taken meanwhile is given up, never fought over);
3. gives back leases above its share, ``ceil(partitions / live workers)``, and takes free ones
   (an atomic create) up to it, starting at an offset derived from its id so workers spread.

A worker killed with SIGKILL stops renewing; its leases expire after at most ``lease_s`` and the
others take them at their next tick. What it had fetched and not acknowledged is redelivered
by JetStream after the consumer's ``ack_wait`` to whoever consumes the partition then.
Thread safety: one asyncio task.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from typing import Any

LEASE_PREFIX = "p."
WORKER_PREFIX = "w."


async def lease_bucket(js: Any, durable: str, lease_s: float) -> Any:
    """The lease bucket of ``durable`` (created with TTL ``lease_s`` unless it exists)."""
    from nats.js.errors import BucketNotFoundError

    bucket = f"{durable}-leases"
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        from nats.js.api import KeyValueConfig

        return await js.create_key_value(KeyValueConfig(bucket=bucket, ttl=lease_s, history=1))


class Leases:
    """The partitions one worker holds (see the module)."""

    def __init__(self, kv: Any, worker_id: str, partitions: int) -> None:
        self.kv = kv
        self.worker_id = worker_id
        self.partitions = partitions
        self.owned: dict[int, int] = {}  # partition -> revision of our last write
        self.live = 1
        self.taken = 0  # leases acquired
        self.given_back = 0
        self.lost = 0  # leases that expired before renewal

    async def _live_workers(self) -> int:
        from nats.js.errors import NoKeysError

        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return 1
        return max(1, sum(1 for k in keys if k.startswith(WORKER_PREFIX)))

    async def tick(self) -> set[int]:
        """Heartbeat, renew, balance; the partitions held afterwards."""
        from nats.js.errors import KeyWrongLastSequenceError

        me = self.worker_id.encode()
        await self.kv.put(f"{WORKER_PREFIX}{self.worker_id}", me)
        self.live = await self._live_workers()
        for p, rev in list(self.owned.items()):
            try:
                self.owned[p] = await self.kv.update(f"{LEASE_PREFIX}{p}", me, last=rev)
            except KeyWrongLastSequenceError:
                del self.owned[p]
                self.lost += 1
        share = math.ceil(self.partitions / self.live)
        for p in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            await self.release(p)
        start = zlib.crc32(me) % self.partitions
        for i in range(self.partitions):
            if len(self.owned) >= share:
                break
            p = (start + i) % self.partitions
            if p in self.owned:
                continue
            try:
                self.owned[p] = await self.kv.create(f"{LEASE_PREFIX}{p}", me)
                self.taken += 1
            except KeyWrongLastSequenceError:
                continue
        return set(self.owned)

    async def release(self, p: int) -> None:
        """Give partition ``p`` back (its consumer must be idle: everything fetched acked)."""
        rev = self.owned.pop(p, None)
        if rev is None:
            return
        try:
            await self.kv.delete(f"{LEASE_PREFIX}{p}", last=rev)
            self.given_back += 1
        except Exception:  # expired meanwhile (and maybe taken): it is not ours either way
            self.lost += 1

    async def release_all(self) -> None:
        """Give back every lease and the heartbeat (a clean stop: the others take over at once)."""
        for p in list(self.owned):
            await self.release(p)
        with contextlib.suppress(Exception):
            await self.kv.delete(f"{WORKER_PREFIX}{self.worker_id}")
