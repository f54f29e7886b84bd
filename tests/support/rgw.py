"""A real S3-protocol server for tests: a throwaway single-node Ceph cluster.

The lake code talks to S3, and the only honest way to test it without Docker is
a real S3 implementation that checks SigV4 signatures and has the quirks of a
real store. Ceph's RADOS Gateway (radosgw) is one, installable from Debian apt
(``scripts/install-ceph.sh``). It needs a tiny cluster behind it: one monitor,
one OSD that keeps its data in memory (memstore), and the gateway itself.

Everything lives under the ``workdir`` given to :func:`start_rgw`: the config
file (passed with ``-c`` to every daemon and tool), a fresh fsid, keyrings,
run dir, logs and admin sockets. Every daemon binds 127.0.0.1 only, on ports
that were free when the cluster started, so two clusters can run side by side
and nothing here touches a system-wide Ceph. Daemons run in the foreground as
children of the test process; they are stopped by the PIDs kept here, never by
name.

Usage::

    server = start_rgw(tmp_path / "rgw")
    try:
        ...  # boto3 / pyarrow against server.endpoint with its keys
        server.stop_gateway()  # S3 outage: connection refused
        server.start_gateway()  # back, same port, same data
    finally:
        server.stop()
"""

import contextlib
import ctypes
import json
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import pyarrow.fs as pafs

# Ids of the daemons; fixed because each cluster has its own directory.
_MON_ID = "a"
_OSD_ID = 0
_RGW_NAME = "client.rgw.gw"

# Deadlines. A cold start takes about 1.5 s on 2 cores (15 s and more without
# the paxos settings in the config); these leave room for a loaded CI machine
# without letting a broken start hang the test run.
_CEPH_CLI_TIMEOUT_S = 60.0
_MON_READY_TIMEOUT_S = 60.0
_OSD_UP_TIMEOUT_S = 60.0
_RGW_READY_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 20.0
_POLL_INTERVAL_S = 0.2

# Unix socket paths are limited to 108 bytes (sun_path) on Linux. pytest's
# tmp_path can be long; past this length the admin sockets are turned off
# instead of making the daemons fail on a path they cannot bind.
_MAX_SOCKET_PATH = 100

# Lines of a log file quoted in a RuntimeError.
_LOG_TAIL_LINES = 40

# Memory the OSD may use for object data (memstore): 1 GiB is room for a few
# hundred MB of test objects plus RGW's own metadata.
_MEMSTORE_BYTES = 1 << 30

_PR_SET_PDEATHSIG = 1
# Looked up once here, not in the forked child: dlopen after fork can deadlock
# on a loader lock held by another thread of the parent.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """Run in the child before exec: get SIGTERM if the test process dies.

    A test run killed hard (SIGKILL, CI timeout) would otherwise leave the
    daemons running and holding their ports. Linux delivers the signal when the
    *thread* that forked exits, so start the cluster from a long-lived thread
    (pytest fixtures run in the main thread).
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _random_key(length: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _tool(name: str) -> str:
    """Find a Ceph program on PATH, with a hint on how to install it."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found on PATH; run scripts/install-ceph.sh"
        raise RuntimeError(msg)
    return path


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class _Daemon:
    """One daemon process started here, with the files that explain its death."""

    name: str
    proc: subprocess.Popen[bytes]
    out: IO[bytes]  # stdout+stderr of the process
    out_path: Path
    log_path: Path  # the daemon's own Ceph log

    def logs(self) -> str:
        return _tail(self.out_path) + "\n" + _tail(self.log_path)


@dataclass(frozen=True, slots=True)
class RgwUser:
    """An S3 user of the gateway: its id (the policy principal) and its keys."""

    uid: str
    access_key: str
    secret_key: str

    @property
    def principal(self) -> str:
        """The ARN a bucket policy names this user by (RGW users live in the default, empty tenant)."""
        return f"arn:aws:iam:::user/{self.uid}"


@dataclass
class RgwServer:
    """A single-node Ceph cluster with a RADOS Gateway on 127.0.0.1:``port``.

    Create it with :func:`start_rgw`, or construct it and call :meth:`start`.
    """

    workdir: Path
    port: int
    access_key: str
    secret_key: str
    _daemons: dict[str, _Daemon] = field(default_factory=dict, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    # -- public API --------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, e.g. ``http://127.0.0.1:7480``."""
        return f"http://127.0.0.1:{self.port}"

    def filesystem(self, region: str, *, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
        """A pyarrow S3 client of this server as its admin user."""
        return pafs.S3FileSystem(
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=region,
            allow_bucket_creation=allow_bucket_creation,
        )

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the daemons running now, by name (mon, osd, rgw)."""
        return {name: d.proc.pid for name, d in self._daemons.items() if d.proc.poll() is None}

    def start(self) -> None:
        """Create and start the cluster (mon, osd, rgw) and the S3 user.

        Returns once the gateway answers HTTP 200 on ``/``. On failure every
        daemon started so far is stopped and a RuntimeError quotes the log.
        """
        if self._started:
            msg = "start() runs once; after stop_gateway() use start_gateway()"
            raise RuntimeError(msg)
        self._started = True
        try:
            self._bootstrap()
        except BaseException:
            self.stop()
            raise

    def create_user(self, uid: str) -> RgwUser:
        """A new S3 user with random keys that may create no bucket: a bucket policy says what it may do."""
        user = RgwUser(
            uid=uid,
            access_key=_random_key(20, string.ascii_uppercase + string.digits),
            secret_key=_random_key(40, string.ascii_letters + string.digits),
        )
        argv = ["user", "create", "--uid", uid, "--display-name", uid, "--max-buckets=-1"]
        self._run(self._argv("radosgw-admin", *argv, "--access-key", user.access_key, "--secret-key", user.secret_key))
        return user

    def stop_gateway(self) -> None:
        """Stop only radosgw (an S3 outage); mon and osd keep the data."""
        self._stop_daemon("rgw")

    def start_gateway(self) -> None:
        """Start radosgw again on the same port and wait until it answers."""
        if "mon" not in self._daemons or "osd" not in self._daemons:
            msg = "start_gateway() needs a started cluster; call start() first"
            raise RuntimeError(msg)
        if "rgw" in self._daemons:
            msg = "radosgw is already running; call stop_gateway() first"
            raise RuntimeError(msg)
        self._spawn_rgw()
        self._wait_rgw_ready()

    def stop(self) -> None:
        """Stop every daemon this object started, gateway first, by PID.

        Files stay in ``workdir`` (logs help after a failure); the caller owns
        that directory and removes it.
        """
        for name in ("rgw", "osd", "mon"):
            self._stop_daemon(name)

    def __enter__(self) -> Self:
        """Use as ``with start_rgw(path) as server:``; stops on exit."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop every daemon, whether or not the block raised."""
        self.stop()

    # -- layout ------------------------------------------------------------

    @property
    def _root(self) -> Path:
        return self.workdir / "ceph"

    @property
    def _conf(self) -> Path:
        return self._root / "ceph.conf"

    @property
    def _log_dir(self) -> Path:
        return self._root / "log"

    # -- bootstrap ---------------------------------------------------------

    def _bootstrap(self) -> None:
        root = self._root
        if root.exists():
            # A fresh cluster needs a fresh directory: mkfs refuses old data
            # and a stale fsid would mix two clusters.
            msg = f"{root} already exists; give start_rgw() a new workdir"
            raise RuntimeError(msg)
        for sub in ("log", "run", "mon", "osd", "rgw", "crash", "tmp"):
            (root / sub).mkdir(parents=True)

        mon_port = _free_port()
        fsid = str(uuid.uuid4())
        self._write_conf(fsid, mon_port)

        # Auth is off ("none"), but ceph-mon --mkfs still wants a keyring with
        # a mon. key; the config points every tool at this one, never /etc/ceph.
        keyring = root / "keyring"
        self._run(
            ["ceph-authtool", "--create-keyring", str(keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"]
        )

        monmap = root / "monmap"
        self._run(
            ["monmaptool", "--create", "--fsid", fsid, "--addv", _MON_ID, f"[v2:127.0.0.1:{mon_port}]", str(monmap)]
        )
        self._run(self._argv("ceph-mon", "-i", _MON_ID, "--mkfs", "--monmap", str(monmap), "--keyring", str(keyring)))
        self._spawn("mon", self._argv("ceph-mon", "-i", _MON_ID, "-f"), log_name=f"ceph-mon.{_MON_ID}.log")
        self._wait_mon_ready()

        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        if osd_id != str(_OSD_ID):
            msg = f"expected the new OSD to get id {_OSD_ID}, got {osd_id!r}"
            raise RuntimeError(msg)
        # ceph-osd --mkfs does not create its data directory (memstore
        # asserts on the missing path).
        (root / "osd" / f"ceph-{_OSD_ID}").mkdir()
        self._run(self._argv("ceph-osd", "-i", str(_OSD_ID), "--mkfs", "--osd-uuid", osd_uuid))
        # Place the OSD in the CRUSH map ourselves (crush update on start is
        # off) so the default rule can map every PG to it.
        self._ceph("osd", "crush", "add", f"osd.{_OSD_ID}", "1.0", "root=default", "host=localhost")
        self._spawn("osd", self._argv("ceph-osd", "-i", str(_OSD_ID), "-f"), log_name=f"ceph-osd.{_OSD_ID}.log")
        self._wait_osd_up()

        self._spawn_rgw()
        self._wait_rgw_ready()

        user = ["user", "create", "--uid", "leadscore-test", "--display-name", "leadscore test"]
        self._run(self._argv("radosgw-admin", *user, "--access-key", self.access_key, "--secret-key", self.secret_key))

    def _write_conf(self, fsid: str, mon_port: int) -> None:
        root = self._root
        run_dir = root / "run"
        # Admin sockets only for the daemons (the CLI tools would otherwise
        # create one per call) and only if the path fits in sun_path.
        longest_socket = run_dir / f"{_RGW_NAME}.asok"
        admin_socket = f"{run_dir}/$name.asok" if len(str(longest_socket)) <= _MAX_SOCKET_PATH else ""
        conf = f"""\
# Generated by tests/support/rgw.py for one throwaway test cluster.
[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_port}]
# Loopback only, for every daemon and both networks.
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
# No cephx: nothing to leak, nothing to rotate. crc (not "secure") because
# with auth off radosgw otherwise loops on auth error -13.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms cluster mode = crc
ms service mode = crc
# Every path under this directory, nothing in /etc, /var or /run.
keyring = {root}/keyring
run dir = {run_dir}
log file = {root}/log/$cluster-$name.log
mon cluster log file = {root}/log/$cluster.log
crash dir = {root}/crash
tmp dir = {root / "tmp"}
admin socket =
pid file =
mon data = {root}/mon/$cluster-$id
osd data = {root}/osd/$cluster-$id
# One OSD: single-replica pools, PGs spread over OSDs (type 0), not hosts.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd crush update on start = false
# RGW creates about 7 pools; few fixed PGs keep the OSD small and fast.
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
# Every pool RGW creates (about 7, at start and on the first bucket) is an
# osdmap change, and the monitor batches changes for "paxos propose interval"
# (1 s by default): that alone made start take 20 s. One node needs no batching.
paxos propose interval = 0.05
paxos min wait = 0.01
# The disk under workdir may be fuller than Ceph likes; never let the
# monitor shut itself down over it.
mon data avail crit = 0
mon data avail warn = 0

[mon]
admin socket = {admin_socket}

[osd]
admin socket = {admin_socket}
osd objectstore = memstore
memstore device bytes = {_MEMSTORE_BYTES}

[{_RGW_NAME}]
admin socket = {admin_socket}
rgw data = {root}/rgw
rgw frontends = beast endpoint=127.0.0.1:{self.port}
# Path-style addressing only (the tests use http://127.0.0.1:PORT/bucket);
# no rgw dns name, so a Host header is never read as a bucket name.
# A small thread pool and no background work: start fast, stay small.
rgw thread pool size = 32
rgw enable usage log = false
rgw enable ops log = false
rgw dynamic resharding = false
rgw init timeout = 60
"""
        self._conf.write_text(conf, encoding="utf-8")

    # -- processes ---------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], log_name: str) -> None:
        """Start a daemon in the foreground, output to log/NAME.out."""
        argv = [_tool(argv[0]), *argv[1:]]
        out_path = self._log_dir / f"{name}.out"
        out = out_path.open("ab")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self._root,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
        )
        self._daemons[name] = _Daemon(
            name=name, proc=proc, out=out, out_path=out_path, log_path=self._log_dir / log_name
        )

    def _spawn_rgw(self) -> None:
        self._spawn("rgw", self._argv("radosgw", "-n", _RGW_NAME, "-f"), log_name=f"ceph-{_RGW_NAME}.log")

    def _stop_daemon(self, name: str) -> None:
        daemon = self._daemons.pop(name, None)
        if daemon is None:
            return
        proc = daemon.proc
        if proc.poll() is None:
            # Only the PID we started; SIGTERM lets ceph shut down cleanly.
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=_STOP_TIMEOUT_S)
        daemon.out.close()

    def _check_alive(self, name: str) -> None:
        daemon = self._daemons[name]
        code = daemon.proc.poll()
        if code is not None:
            msg = f"{name} exited with code {code} during start\n{daemon.logs()}"
            raise RuntimeError(msg)

    def _run(self, argv: list[str], timeout: float = _CEPH_CLI_TIMEOUT_S) -> str:
        """Run a one-shot Ceph tool; raise with its output if it fails."""
        argv = [_tool(argv[0]), *argv[1:]]
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self._root,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            msg = f"timed out after {timeout:.0f} s: {' '.join(argv)}\n{self._all_logs()}"
            raise RuntimeError(msg) from exc
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
            msg = f"failed with code {result.returncode}: {' '.join(argv)}\n{output}\n{self._all_logs()}"
            raise RuntimeError(msg)
        return result.stdout

    def _argv(self, tool: str, *args: str) -> list[str]:
        """Command line for a Ceph program that reads this cluster's config."""
        return [tool, "-c", str(self._conf), *args]

    def _ceph(self, *args: str) -> str:
        return self._run(self._argv("ceph", "--connect-timeout", "30", *args))

    def _all_logs(self) -> str:
        return "\n".join(d.logs() for d in self._daemons.values())

    # -- readiness ---------------------------------------------------------

    def _wait_mon_ready(self) -> None:
        # The monitor is ready once it has formed its quorum of one.
        deadline = time.monotonic() + _MON_READY_TIMEOUT_S
        while True:
            self._check_alive("mon")
            with contextlib.suppress(RuntimeError):
                status = json.loads(self._ceph("quorum_status", "-f", "json"))
                if status.get("quorum_names") == [_MON_ID]:
                    return
            if time.monotonic() > deadline:
                msg = f"ceph-mon formed no quorum in {_MON_READY_TIMEOUT_S:.0f} s\n{self._all_logs()}"
                raise RuntimeError(msg)
            time.sleep(_POLL_INTERVAL_S)

    def _wait_osd_up(self) -> None:
        deadline = time.monotonic() + _OSD_UP_TIMEOUT_S
        while True:
            self._check_alive("osd")
            dump = json.loads(self._ceph("osd", "dump", "-f", "json"))
            if any(o.get("osd") == _OSD_ID and o.get("up") == 1 for o in dump.get("osds", [])):
                return
            if time.monotonic() > deadline:
                msg = f"ceph-osd not up in {_OSD_UP_TIMEOUT_S:.0f} s\n{self._all_logs()}"
                raise RuntimeError(msg)
            time.sleep(_POLL_INTERVAL_S)

    def _wait_rgw_ready(self) -> None:
        # Anonymous GET / is ListAllMyBuckets: 200 once radosgw serves S3.
        deadline = time.monotonic() + _RGW_READY_TIMEOUT_S
        while True:
            self._check_alive("rgw")
            url = self.endpoint + "/"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310 - loopback http
            ):
                if resp.status == HTTPStatus.OK:
                    return
            if time.monotonic() > deadline:
                msg = f"radosgw did not answer on {self.endpoint} in {_RGW_READY_TIMEOUT_S:.0f} s\n{self._all_logs()}"
                raise RuntimeError(msg)
            time.sleep(_POLL_INTERVAL_S)


def start_rgw(workdir: Path, port: int | None = None) -> RgwServer:
    """Start a fresh cluster under ``workdir`` and return it, ready for S3.

    ``port`` is the gateway's port on 127.0.0.1; ``None`` picks a free one.
    The access and secret keys are random for each call.
    """
    server = RgwServer(
        workdir=workdir,
        port=_free_port() if port is None else port,
        access_key=_random_key(20, string.ascii_uppercase + string.digits),
        secret_key=_random_key(40, string.ascii_letters + string.digits),
    )
    server.start()
    return server
