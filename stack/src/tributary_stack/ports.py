"""Before the stack starts anything: are its fixed ports free, and if not, who holds them."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tributary.errors import ConfigError

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


@dataclass(frozen=True, slots=True)
class Port:
    """One port the stack binds: what it is for and the variable that moves it."""

    number: int
    role: str
    variable: str


@dataclass(frozen=True, slots=True)
class Holder:
    """A process listening on a port."""

    pid: int
    command: str


def is_free(host: str, port: int) -> bool:
    """True when a server could bind host:port now (SO_REUSEADDR, as the servers bind); other
    bind errors (a host that is not this machine's) are raised, not taken for "in use"."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise ConfigError(f"cannot bind {host}:{port}: {exc} (is STACK_HOST right?)") from exc
        return True


def holder_of(port: int, proc: Path = Path("/proc")) -> Holder | None:
    """The process listening on TCP `port`, from /proc (Linux); None when it cannot be told."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return Holder(int(entry.name), _command(entry))
    return None


def check_ports_free(host: str, ports: Iterable[Port]) -> None:
    """Raise ConfigError naming every taken port, its holder and how to free it or move."""
    problems = []
    for port in ports:
        if port.number == 0 or is_free(host, port.number):
            continue
        who = holder_of(port.number)
        if who is None:
            hint = (
                f"find its holder with `ss -ltnp 'sport = :{port.number}'`"
                if sys.platform.startswith("linux")
                else f"find its holder with `lsof -nP -iTCP:{port.number} -sTCP:LISTEN`"
            )
        else:
            hint = f"held by pid {who.pid} ({who.command}); stop it with `kill {who.pid}`"
        problems.append(
            f"port {port.number} on {host} ({port.role}) is taken: {hint}, "
            f"or set {port.variable} to another port"
        )
    if problems:
        raise ConfigError(
            "the stack did not start anything: " + "; ".join(problems) + ". "
            "An earlier `make up` may still be running."
        )


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def _command(entry: Path) -> str:
    with contextlib.suppress(OSError):
        argv = (entry / "cmdline").read_bytes().split(b"\0")
        text = " ".join(a.decode(errors="replace") for a in argv if a)
        return text if len(text) <= 120 else text[:117] + "…"
    return "unknown command"
