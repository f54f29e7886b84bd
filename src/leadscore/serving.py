"""Run the ASGI server: one process, or one worker per core each with its own SO_REUSEPORT listening socket.

uvicorn's own multi-worker mode shares one listening socket between workers, and the kernel then hands
connections to whichever worker accepts first: under load we measured all of a client's 32 keep-alive
connections landing on one worker while the other idled (server CPU 1.0 of 2 cores). With one socket per
worker in a SO_REUSEPORT group, the kernel spreads new connections over the workers by hash. Supervision
(signals, restarting a dead worker) stays uvicorn's.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket in the SO_REUSEPORT group of host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def ensure_port_free(host: str, port: int) -> None:
    """Raise OSError (EADDRINUSE) if anything listens on host:port.

    SO_REUSEPORT would otherwise let a second server started by mistake on the same port join the first
    one's group silently and take half its traffic; a plain bind fails as it should.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


class ReusePortWorkers(Multiprocess):
    """uvicorn's supervisor, starting worker i on socket i; a replacement worker listens on all of them."""

    def __init__(self, config: uvicorn.Config) -> None:
        ensure_port_free(config.host, config.port)
        sockets = [reuse_port_socket(config.host, config.port) for _ in range(config.workers)]
        super().__init__(config, sockets=sockets)

    def init_processes(self) -> None:
        """Start one worker per socket."""
        for sock in self.sockets:
            process = Process(self.config, [sock])
            process.start()
            self.processes.append(process)


def run(config: uvicorn.Config) -> None:
    """Serve until stopped: in this process for one worker, else under the reuse-port supervisor."""
    if config.workers > 1:
        ReusePortWorkers(config).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        # The app did not start (e.g. lifespan failed): say so to the process manager, as uvicorn.run does.
        sys.exit(STARTUP_FAILURE)
