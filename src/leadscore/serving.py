"""Run the ASGI server: one process, or one worker per core each with its own SO_REUSEPORT listening socket.

uvicorn's own multi-worker mode shares one listening socket between workers, and the kernel then hands
connections to whichever worker accepts first: under load we measured all of a client's 32 keep-alive
connections landing on one worker while the other idled (server CPU 1.0 of 2 cores). With one socket per
worker in a SO_REUSEPORT group, the kernel spreads new connections over the workers by hash. Supervision
(signals, restarting a dead worker) stays uvicorn's. The listening sockets are bound before any worker or app
starts, so a busy port fails the command at once.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from leadscore._compat import HeaderLimits, ReusePortWorkers, ServerConfig
from leadscore.config import Settings


def _socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket in the SO_REUSEPORT group of host:port."""
    sock = _socket(host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def plain_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; raises OSError (EADDRINUSE) if anything listens on host:port.

    SO_REUSEPORT would otherwise let a second server started by mistake on the same port join the first
    one's group silently and take half its traffic; a plain bind fails as it should.
    """
    sock = _socket(host)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def ensure_port_free(host: str, port: int) -> None:
    """Raise OSError (EADDRINUSE) if anything listens on host:port."""
    plain_socket(host, port).close()


def server_config(settings: Settings, host: str, port: int, workers: int) -> uvicorn.Config:
    """The uvicorn configuration of `leadscore serve`."""
    return ServerConfig(
        "leadscore.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        # Above an ALB's 60 s idle timeout, so the balancer closes idle connections, not us.
        timeout_keep_alive=75,
        # Connections (idle keep-alives included) per worker, a backstop under the file-descriptor limit; the
        # in-flight cap on requests is EdgeLimitsMiddleware's (503 in our envelope).
        limit_concurrency=settings.max_connections,
        # No `server: uvicorn` header: nothing to tell a scanner which server and version to try.
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        header_limits=HeaderLimits(settings.max_header_bytes, settings.header_timeout_seconds),
    )


def run(config: uvicorn.Config) -> None:
    """Serve until stopped: in this process for one worker, else under the reuse-port supervisor.

    Raises OSError, before anything starts, when the port cannot be bound.
    """
    if config.workers > 1:
        ensure_port_free(config.host, config.port)
        sockets = [reuse_port_socket(config.host, config.port) for _ in range(config.workers)]
        ReusePortWorkers(config, sockets=sockets).run()
        return
    sock = plain_socket(config.host, config.port)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        # The app did not start (e.g. lifespan failed): say so to the process manager, as uvicorn.run does.
        sys.exit(STARTUP_FAILURE)
