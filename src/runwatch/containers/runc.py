"""Real OCI containers run with the ``runc`` binary, with complete cleanup.

A :class:`RuncContainer` owns one container id (``rw-<hex>``), one bundle directory
(``config.json``, secret files, logs) and the cgroup ``/runwatch/<id>`` that runc creates
under every v1 controller and in the v2 hierarchy (:func:`runwatch.host.cgroup_v2`). runc's state stays in its
default root (``/run/runc/<id>/state.json``) so other code can read it.

Two ways to run:

* :meth:`RuncContainer.run` runs a command in the foreground and returns its exit code and
  output, like ``subprocess.run``;
* :meth:`RuncContainer.start` starts a long-lived container (``runc run`` kept in the
  foreground under this process, its stdio in log files), then :meth:`~RuncContainer.exec`
  runs more commands inside it and :meth:`~RuncContainer.stop` ends it.

Both keep the container's init a descendant of this process (runc is its parent), so it is
always reaped here and never left as a zombie. :meth:`RuncContainer.close` (also on context
exit, fixture teardown and interpreter exit) removes everything: the runc container, its
cgroup directories, any host mounts under the bundle and the bundle itself.

Thread safety: one container object is meant for one thread; distinct objects are
independent.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets as _secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from runwatch.containers.hostfs import (
    CgroupError,
    cgroup_mounts,
    cgroup_parent_lock,
    mounts_under,
    own_bounding_capabilities,
    owner_token,
    remove_cgroup,
)
from runwatch.containers.oci import ContainerOptions, build_oci_config
from runwatch.containers.rootfs import Rootfs, RootfsError, build_rootfs
from runwatch.host import cgroup_v2

CGROUP_PARENT = "runwatch"
"""Containers live at cgroupsPath ``/runwatch/<id>``."""
RUNC_STATE_ROOT = Path("/run/runc")
DEFAULT_BUNDLE_PARENT = Path("/run/runwatch/bundles")
DEFAULT_LONG_LIVED_ARGS: tuple[str, ...] = ("/usr/bin/sleep", "infinity")

_POLL_S = 0.005
_LIVE: set[RuncContainer] = set()
"""Containers not yet closed (strong references: closed at interpreter exit at the latest)."""


class ContainerError(RuntimeError):
    """A container could not be created, started or cleaned up; the message is one line."""


def _one_line(text: str | bytes, limit: int = 600) -> str:
    """Collapse runc output to one line (and bound its length) for an error message."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _runc_errors(log_path: Path) -> str:
    """The ``msg`` of every error-level record in runc's JSON log, joined into one line."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    messages = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "fatal"):
            messages.append(str(record.get("msg", "")))
    return _one_line("; ".join(messages))


class RuncContainer:
    """One runc container built on a :class:`Rootfs`; see the module docstring for the lifecycle.

    Options are the keyword arguments of :class:`ContainerOptions` (``name``, ``secrets``,
    ``binds``, ``env``, ``cwd``, ``uid``, ``privileged``, ``netns``, ...), or pass
    ``options=`` directly. Raises :class:`ContainerError` for a missing runc or bad options.
    """

    def __init__(
        self,
        rootfs: Rootfs | None = None,
        *,
        options: ContainerOptions | None = None,
        runc_binary: str = "runc",
        bundle_parent: Path | None = None,
        **option_kwargs: Any,
    ) -> None:
        resolved = shutil.which(runc_binary)
        if resolved is None:
            raise ContainerError(f"runc binary {runc_binary!r} not found on PATH (install the runc package)")
        if options is not None and option_kwargs:
            raise ContainerError("pass either options= or option keywords, not both")
        try:
            self.options = options if options is not None else ContainerOptions(**option_kwargs)
            self.options.validate()
        except (TypeError, ValueError) as exc:
            raise ContainerError(f"invalid container options: {exc}") from exc
        try:
            self.rootfs = rootfs if rootfs is not None else build_rootfs()
        except RootfsError as exc:
            raise ContainerError(str(exc)) from exc
        self.runc = resolved
        self.id = f"rw-{_secrets.token_hex(6)}"
        self.bundle = Path(bundle_parent or DEFAULT_BUNDLE_PARENT) / self.id
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdio: list[IO[bytes]] = []
        self._init_pid: int | None = None
        self._closed = False
        _LIVE.add(self)

    # -- identity -------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The container's name (annotation ``runwatch.container.name``), if given."""
        return self.options.name

    @property
    def cgroup_path(self) -> str:
        """The OCI cgroupsPath, ``/runwatch/<id>``."""
        return f"/{CGROUP_PARENT}/{self.id}"

    @property
    def cgroup_dir(self) -> Path:
        """The container's cgroup v2 directory, ``<v2 root>/runwatch/<id>``."""
        return cgroup_v2().dir_of(f"/{CGROUP_PARENT}/{self.id}")

    @property
    def cgroup_id(self) -> int:
        """The v2 cgroup id (inode of :attr:`cgroup_dir`); only while the container exists."""
        try:
            return os.stat(self.cgroup_dir).st_ino
        except FileNotFoundError:
            raise ContainerError(
                f"container {self.id} has no cgroup {self.cgroup_dir} (not running)"
            ) from None

    @property
    def state_file(self) -> Path:
        """runc's state file for this container (exists while runc knows the container)."""
        return RUNC_STATE_ROOT / self.id / "state.json"

    @property
    def init_pid(self) -> int:
        """Host pid of the long-lived container's init (pid 1 in its pid namespace)."""
        if self._init_pid is None or not self.running:
            raise ContainerError(f"container {self.id} is not running (call start() first)")
        return self._init_pid

    @property
    def running(self) -> bool:
        """Whether a long-lived container started with :meth:`start` is still up."""
        return self._proc is not None and self._proc.poll() is None

    def state(self) -> dict[str, Any]:
        """``runc state`` as a dict (keys such as ``status``, ``pid``, ``bundle``, ``annotations``)."""
        proc = self._runc("state", self.id, check=True)
        loaded = json.loads(proc.stdout)
        if not isinstance(loaded, dict):
            raise ContainerError(f"runc state {self.id} returned {type(loaded).__name__}, expected an object")
        return loaded

    def logs(self) -> tuple[bytes, bytes]:
        """(stdout, stderr) written so far by the long-lived container's init."""
        return self._read_log("stdout.log"), self._read_log("stderr.log")

    # -- foreground -----------------------------------------------------------------------

    def run(
        self, args: Sequence[str], *, timeout: float = 60.0, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``args`` as the container's init in the foreground and wait for it.

        Returns the command's exit code, stdout and stderr. The container is gone (runc
        state, cgroups) when this returns; the bundle stays until :meth:`close`. Raises
        :class:`ContainerError` if runc fails to start it or it runs past ``timeout`` s.
        """
        self._check_idle()
        self._prepare(args)
        log = self._fresh_log("run")
        cmd = self._run_cmd(log)
        timed_out = False
        with cgroup_parent_lock(shared=True):
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_all()
                try:
                    proc.communicate(timeout=10)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
        self._teardown_runtime()
        if timed_out:
            raise ContainerError(f"container {self.id} command {list(args)!r} timed out after {timeout}s")
        failure = _runc_errors(log)
        if proc.returncode != 0 and failure:
            raise ContainerError(f"runc run {self.id} failed (rc {proc.returncode}): {failure}")
        return subprocess.CompletedProcess(list(args), proc.returncode, out, err)

    def _run_cmd(self, log: Path, *options: str) -> list[str]:
        """``runc run`` of this bundle logging JSON to ``log``, with ``options`` before the id."""
        return [self.runc, "--log", str(log), "--log-format", "json", "run", "--bundle", str(self.bundle),
                *options, self.id]

    # -- long-lived -----------------------------------------------------------------------

    def start(self, args: Sequence[str] = DEFAULT_LONG_LIVED_ARGS, *, timeout: float = 10.0) -> int:
        """Start a long-lived container running ``args``; return its init's host pid.

        Returns once runc reports the container ``running`` (or once a quick command has
        already run to its end: then :attr:`running` is False and :meth:`stop` gives its rc).
        The init's stdout/stderr go to ``stdout.log``/``stderr.log`` in the bundle (see
        :meth:`logs`); stdin is /dev/null.
        """
        self._check_idle()
        self._prepare(args)
        log = self._fresh_log("start")
        pid_file = self.bundle / "init.pid"
        pid_file.unlink(missing_ok=True)
        self._close_stdio()
        self._stdio = [open(self.bundle / "stdout.log", "wb"), open(self.bundle / "stderr.log", "wb")]  # noqa: SIM115
        cmd = self._run_cmd(log, "--pid-file", str(pid_file))
        deadline = time.monotonic() + timeout
        with cgroup_parent_lock(shared=True):
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._stdio[0],
                stderr=self._stdio[1],
                start_new_session=True,
            )
            while True:
                rc = self._proc.poll()
                if rc is not None:
                    failure = _runc_errors(log)
                    if pid_file.exists() and not failure:
                        break  # it started and its command has already exited; stop() reports rc
                    self._teardown_runtime()
                    detail = failure or _one_line(self._read_log("stderr.log"))
                    raise ContainerError(f"container {self.id} failed to start (rc {rc}): {detail}")
                if pid_file.exists() and self._status() == "running":
                    break
                if time.monotonic() > deadline:
                    self._kill_all()
                    self._teardown_runtime()
                    raise ContainerError(f"container {self.id} did not reach 'running' within {timeout}s")
                time.sleep(_POLL_S)
        self._init_pid = int(pid_file.read_text().strip())
        return self._init_pid

    def exec(
        self,
        args: Sequence[str],
        *,
        timeout: float = 60.0,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``args`` inside the running container (``runc exec``) and wait for it."""
        if not self.running:
            raise ContainerError(f"container {self.id} is not running (call start() first)")
        if not args:
            raise ContainerError("exec command must not be empty")
        log = self._fresh_log("exec")
        pid_file = self.bundle / f"exec-{_secrets.token_hex(4)}.pid"
        cmd = [self.runc, "--log", str(log), "--log-format", "json", "exec", "--pid-file", str(pid_file)]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        if cwd is not None:
            cmd += ["--cwd", cwd]
        if uid is not None:
            cmd += ["--user", f"{uid}:{gid if gid is not None else uid}"]
        cmd += [self.id, *[str(a) for a in args]]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            proc.kill()
            proc.communicate()
            raise ContainerError(f"exec {list(args)!r} in {self.id} timed out after {timeout}s") from None
        finally:
            pid_file.unlink(missing_ok=True)
        failure = _runc_errors(log)
        if proc.returncode != 0 and failure:
            raise ContainerError(f"runc exec in {self.id} failed (rc {proc.returncode}): {failure}")
        return subprocess.CompletedProcess(list(args), proc.returncode, out, err)

    def stop(self, grace: float = 1.0) -> int | None:
        """Stop the long-lived container: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns runc's exit code (the init's exit status, 128+signal if killed), or None if
        it was not started. Cgroups and runc state are removed; the bundle stays until close.
        """
        if self._proc is None:
            return None
        if self._proc.poll() is None and grace > 0:
            self._runc("kill", self.id, "TERM")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=grace)
        if self._proc.poll() is None:
            self._kill_all()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        rc = self._proc.returncode
        self._proc = None
        self._init_pid = None
        self._close_stdio()
        self._teardown_runtime()
        return rc

    # -- cleanup --------------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything this container created; idempotent, safe after failures.

        Order: kill and reap the container, ``runc delete -f``, remove its cgroup directories
        (every v1 controller and unified), detach host mounts under the bundle, delete the
        bundle. Raises :class:`ContainerError` only if something could not be removed.
        """
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        errors: list[str] = []
        try:
            self.stop(grace=0)
        except ContainerError as exc:
            errors.append(str(exc))
        try:
            self._teardown_runtime()
        except ContainerError as exc:
            errors.append(str(exc))
        leftovers = mounts_under(self.bundle)
        for mount_point in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)
        shutil.rmtree(self.bundle, ignore_errors=True)
        left = [str(d) for d in self._cgroup_dirs() if d.exists()]
        if self.bundle.exists():
            left.append(str(self.bundle))
        if left:
            errors.append(f"left {', '.join(left)}")
        if errors:
            raise ContainerError(f"container {self.id} cleanup failed: {'; '.join(errors)}")

    def __enter__(self) -> RuncContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RuncContainer(id={self.id!r}, name={self.name!r}, running={self.running})"

    # -- internals ------------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self._closed:
            raise ContainerError(f"container {self.id} is closed")
        if self.running:
            raise ContainerError(f"container {self.id} is already running")

    def _prepare(self, args: Sequence[str]) -> None:
        """Write the bundle: secret files (mode 0400) and config.json for ``args``."""
        if not args:
            raise ContainerError("container command must not be empty")
        try:
            self.bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
            secret_dir = self.bundle / "secrets"
            secret_dir.mkdir(mode=0o700, exist_ok=True)
            secret_files: dict[str, Path] = {}
            gid = self.options.gid if self.options.gid is not None else self.options.uid
            for key, value in self.options.secrets.items():
                path = secret_dir / key
                path.unlink(missing_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
                try:
                    os.write(fd, bytes(value))
                    os.fchown(fd, self.options.uid, gid)
                finally:
                    os.close(fd)
                secret_files[key] = path
            config = build_oci_config(
                self.options,
                rootfs=self.rootfs,
                args=args,
                container_id=self.id,
                cgroups_path=self.cgroup_path,
                secret_files=secret_files,
                available_capabilities=own_bounding_capabilities(),
                owner=owner_token(os.getpid()),
            )
            tmp = self.bundle / "config.json.tmp"
            tmp.write_text(json.dumps(config, indent=1))
            tmp.replace(self.bundle / "config.json")
        except (OSError, ValueError) as exc:
            raise ContainerError(f"cannot prepare bundle {self.bundle}: {exc}") from exc

    def _fresh_log(self, label: str) -> Path:
        log = self.bundle / f"runc-{label}.log"
        log.unlink(missing_ok=True)
        return log

    def _read_log(self, name: str) -> bytes:
        try:
            return (self.bundle / name).read_bytes()
        except FileNotFoundError:
            return b""

    def _close_stdio(self) -> None:
        for handle in self._stdio:
            handle.close()
        self._stdio = []

    def _runc(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([self.runc, *args], capture_output=True, timeout=30, check=False)
        if check and proc.returncode != 0:
            raise ContainerError(
                f"runc {' '.join(args)} failed (rc {proc.returncode}): {_one_line(proc.stderr)}"
            )
        return proc

    def _status(self) -> str | None:
        proc = self._runc("state", self.id)
        if proc.returncode != 0:
            return None
        try:
            status = json.loads(proc.stdout).get("status")
        except (ValueError, AttributeError):
            return None
        return status if isinstance(status, str) else None

    def _kill_all(self) -> None:
        """SIGKILL every process of the container (ignores a container that is already gone)."""
        if self.state_file.exists():
            self._runc("kill", "--all", self.id, "KILL")

    def _cgroup_dirs(self) -> list[Path]:
        return [mount / CGROUP_PARENT / self.id for mount in cgroup_mounts()]

    def _teardown_runtime(self) -> None:
        """``runc delete -f`` and remove the container's cgroup dirs (and an empty parent)."""
        if self.state_file.exists() or (RUNC_STATE_ROOT / self.id).exists():
            proc = self._runc("delete", "--force", self.id)
            if proc.returncode != 0 and (RUNC_STATE_ROOT / self.id).exists():
                raise ContainerError(f"runc delete {self.id} failed: {_one_line(proc.stderr)}")
        for cgroup in self._cgroup_dirs():
            try:
                remove_cgroup(cgroup)
            except CgroupError as exc:
                raise ContainerError(f"container {self.id}: {exc}") from exc
        with cgroup_parent_lock(shared=False, blocking=False) as locked:
            if locked:
                for mount in cgroup_mounts():
                    with contextlib.suppress(OSError):
                        (mount / CGROUP_PARENT).rmdir()


@contextlib.contextmanager
def managed_container(rootfs: Rootfs | None = None, **option_kwargs: Any) -> Iterator[RuncContainer]:
    """Context manager: a :class:`RuncContainer` that is closed (fully cleaned) on exit."""
    container = RuncContainer(rootfs, **option_kwargs)
    try:
        yield container
    finally:
        container.close()


@atexit.register
def _close_leftovers() -> None:
    """Clean up containers the program forgot to close (best effort, at interpreter exit)."""
    for container in list(_LIVE):
        with contextlib.suppress(Exception):
            container.close()
