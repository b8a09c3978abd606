"""The eBPF kernel sensor as a :class:`runwatch.sensors.base.Source`."""

from __future__ import annotations

import contextlib
import ctypes
from concurrent.futures import Future, ThreadPoolExecutor

from runwatch.bpf.libbpf import check_rc, lib, possible_cpus
from runwatch.bpf.object import BpfObject
from runwatch.bpf.ringbuf import RingReader
from runwatch.events import Event
from runwatch.sensors.base import register_source
from runwatch.sensors.kernel import envnames, loader, watchlist
from runwatch.sensors.kernel import layout as L
from runwatch.sensors.kernel.decode import DecodeError, Decoder
from runwatch.sensors.kernel.dnsnames import ResolvedNames


class KernelSource:
    """Process, network, file and privilege events from the BPF programs.

    ``track_pids``: if given (even empty), only those processes and their descendants are
    reported (the kernel follows forks); more can be added with :meth:`track` after start.
    ``detach_wait``: :meth:`stop` returns once the programs are detached; False for a process
    that exits right after (the detach then finishes in a child, see :func:`loader.unload`).
    Thread safety: ``poll`` from one thread; ``stats``, ``drops_by_cpu``, ``ring_usage`` and ``track`` may be
    called from another.
    """

    name = "kernel"

    def __init__(
        self,
        *,
        track_pids: list[int] | None = None,
        watches: list[watchlist.Watch] | None = None,
        ring_bytes: int = 1 << 24,
        wakeup_bytes: int = 1 << 20,
        disabled: tuple[str, ...] = (),
        env_names: tuple[str, ...] = envnames.DEFAULT,
        detach_wait: bool = True,
    ) -> None:
        self._track = track_pids
        self._detach_wait = detach_wait
        self._env_names = env_names
        self._watches = watches if watches is not None else watchlist.default_watches()
        self._opts = loader.LoadOptions(filter_tracked=track_pids is not None, ring_bytes=ring_bytes,
                                        wakeup_bytes=wakeup_bytes, disabled=disabled)
        self._obj: BpfObject | None = None
        self._loading: Future[tuple[BpfObject, set[str], loader.LoadReport]] | None = None
        self._links: list[int] = []
        self._reader: RingReader | None = None
        self._decoder = Decoder()
        self._names = ResolvedNames()
        self._ncpu = possible_cpus()
        self.report = loader.LoadReport()
        self.decode_errors = 0
        self.events = 0

    def prepare(self) -> None:
        """Begin loading the programs on a thread of their own (the kernel's verification:
        the caller goes on meanwhile); :meth:`start` waits for it, then attaches."""
        if self._loading is None and self._obj is None:
            self._loading = loader.take_preloaded(self._opts)  # begun by the command line, if so
        if self._loading is None and self._obj is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpf-load")
            self._loading = pool.submit(loader.load_programs, self._opts)
            pool.shutdown(wait=False)

    def _loaded(self) -> tuple[BpfObject, set[str], loader.LoadReport]:
        loading, self._loading = self._loading, None
        if loading is None:
            loading = loader.take_preloaded(self._opts)
        return loading.result() if loading is not None else loader.load_programs(self._opts)

    def start(self) -> None:
        """Load (unless :meth:`prepare` did) and attach; raises LibbpfError (with the reason)
        if nothing can run."""
        obj, enabled, self.report = self._loaded()
        self._links = loader.attach_programs(obj, enabled, self.report)
        self._obj = obj
        try:
            # inodes before prefixes: the kernel adds hard-linked inodes (and their bits) only
            # once a prefix matches, so nothing it sets is overwritten here
            watchlist.install_inodes(self._obj.map_fd("watch_inodes"), self._obj.map_fd("watch_ino_bits"),
                                     self._watches)
            watchlist.install_names(self._obj.map_fd("watch_names"), self._obj.map_fd("name_first"), self._watches)
            watchlist.install(self._obj.map_fd("watched"), self._watches)
            envnames.install(self._obj.map_fd("env_allow"), self._env_names)
            for pid in self._track or ():
                self.track(pid)
            self._reader = RingReader(self._obj.map_fd("events"), self._opts.ring_bytes)
        except Exception:
            self.stop()
            raise

    @property
    def clock_offset(self) -> int:
        """Nanoseconds to add to CLOCK_MONOTONIC to get epoch time (shared with other sources)."""
        return self._decoder.clock_offset

    def track(self, pid: int) -> None:
        """Report ``pid`` and its future descendants (only meaningful with track_pids)."""
        assert self._obj is not None, "start() first"
        key, one = ctypes.c_uint32(pid), ctypes.c_uint8(1)
        check_rc(lib().bpf_map_update_elem(self._obj.map_fd("tracked"), ctypes.byref(key), ctypes.byref(one), 0),
                 f"tracking pid {pid}")

    def untrack(self, pid: int) -> None:
        """Stop reporting ``pid`` itself (descendants already tracked stay tracked)."""
        assert self._obj is not None, "start() first"
        key = ctypes.c_uint32(pid)
        lib().bpf_map_delete_elem(self._obj.map_fd("tracked"), ctypes.byref(key))

    def _decode(self, buf: bytes, off: int, length: int) -> Event | None:
        try:
            e = self._decoder.decode(buf, off, length)
        except (DecodeError, ValueError, IndexError):
            self.decode_errors += 1
            return None
        if e.kind == "process.env":  # already on its exec (the decoder holds it until then)
            return None
        self._names.observe(e)
        return e

    def pending(self) -> bool:
        """Whether the ring holds records not yet consumed (the drain's watermark)."""
        return self._reader is not None and self._reader.pending_bytes() > 0

    def wake(self) -> None:
        """End a :meth:`poll`'s wait now (from another thread)."""
        if self._reader is not None:
            self._reader.wake()

    def poll(self, timeout: float) -> list[Event] | None:
        """Wait up to ``timeout`` s (less if the kernel forces a wake-up or :meth:`wake`), then drain."""
        if self._reader is None:
            return None
        if self._reader.pending_bytes() == 0:
            self._reader.wait(timeout)
        batch = self._reader.drain(self._decode)
        self.events += len(batch)
        return batch

    def drops_by_cpu(self) -> dict[tuple[int, str], int]:
        """Records the kernel could not queue (ring buffer full), per (CPU, event kind); non-zero only."""
        if self._obj is None:
            return {}
        fd = self._obj.map_fd("drops")
        vals = (ctypes.c_uint64 * self._ncpu)()
        out: dict[tuple[int, str], int] = {}
        for kind in L.Kind:
            key = ctypes.c_uint32(kind)
            if lib().bpf_map_lookup_elem(fd, ctypes.byref(key), vals) == 0:
                for cpu, n in enumerate(vals):
                    if n:
                        out[(cpu, kind.name.lower())] = n
        return out

    def drops_by_kind(self) -> dict[str, int]:
        """Records the kernel could not queue (ring buffer full), per event kind."""
        out: dict[str, int] = {}
        for (_cpu, kind), n in self.drops_by_cpu().items():
            out[kind] = out.get(kind, 0) + n
        return out

    def ring_usage(self) -> tuple[int, int] | None:
        """(bytes queued and not yet read, ring size) of the events ring; None when not running."""
        reader = self._reader
        if reader is None:
            return None
        try:
            return reader.pending_bytes(), reader.size
        except (ValueError, BufferError):  # closed under the caller (stopping)
            return None

    def stats(self) -> dict[str, int]:
        """Counters: events decoded, drops (never hidden), decode errors, ring records."""
        drops = self.drops_by_kind()
        return {
            "events": self.events,
            "drops": sum(drops.values()),
            "decode_errors": self.decode_errors,
            "records": self._reader.records if self._reader else 0,
            **{f"drops.{k}": v for k, v in drops.items()},
        }

    def stop(self) -> None:
        """Detach everything and free kernel objects (a load still under way too); idempotent."""
        if self._loading is not None:
            with contextlib.suppress(Exception):  # a load that failed took nothing
                self._loaded()[0].close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._obj is not None:
            loader.unload(self._obj, self._links, wait=self._detach_wait)
            self._obj = None


register_source("kernel", KernelSource)
