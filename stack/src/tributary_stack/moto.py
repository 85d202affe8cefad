"""moto in server mode, embedded in this process (aiobotocore needs a real HTTP endpoint)."""

from __future__ import annotations

import logging
import socket
import time

from moto.server import ThreadedMotoServer

from tributary.errors import ConfigError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class MotoServer:
    """A moto server on host:port (port 0 picks a free one), started and stopped explicitly."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        """`http://host:port`, the value for AWS_ENDPOINT_URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        """Start serving; fails clearly when the port is taken."""
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise ConfigError(
                    f"port {self.port} on {self.host} is taken (is `make up` already running?); "
                    "set STACK_AWS_PORT to another port"
                ) from exc
        # werkzeug logs every request at INFO: one line per AWS call drowns the stack's output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving (state is lost)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
