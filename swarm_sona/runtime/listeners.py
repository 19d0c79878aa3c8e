"""Which sockets a set of processes listens on (Linux ``/proc``), and whether any is beyond loopback.

A socket "listens" here when it is a TCP socket in the LISTEN state or a bound UDP socket,
over IPv4 or IPv6. Loopback means 127.0.0.0/8 or ::1 (and their IPv4-mapped IPv6 forms).
Everything is read from ``/proc``: ``/proc/net/{tcp,tcp6,udp,udp6}`` of each process's
network namespace for the sockets, ``/proc/PID/fd`` for which process holds which socket.

Example:
    >>> s = Listener(pid=1, process="raylet", proto="tcp", address="0.0.0.0", port=6379)
    >>> s.loopback, str(s)
    (False, 'raylet (pid 1) tcp 0.0.0.0:6379')
    >>> Listener(1, "gcs_server", "tcp6", "::1", 8000).loopback
    True
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["Listener", "listeners", "exposed", "proc_available", "url_ports"]

_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


@dataclass(frozen=True)
class Listener:
    """One listening socket of one process."""

    pid: int
    process: str
    proto: str          # tcp, tcp6, udp, udp6
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        """True when the socket is bound to a loopback address only."""
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.process} (pid {self.pid}) {self.proto} {host}:{self.port}"


def proc_available() -> bool:
    """True where ``/proc`` describes sockets (Linux)."""
    return Path("/proc/net/tcp").exists()


def _decode_address(hexaddr: str, v6: bool) -> str:
    raw = bytes.fromhex(hexaddr)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    # four host-order 32-bit words
    words = struct.unpack("<4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))


def _socket_table(pid: int) -> dict[int, tuple[str, str, int]]:
    """inode -> (proto, address, port) of the listening sockets in ``pid``'s network namespace."""
    out: dict[int, tuple[str, str, int]] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        want = _TCP_LISTEN if proto.startswith("tcp") else _UDP_UNCONNECTED
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] != want:
                continue
            addr, port = f[1].split(":")
            out[int(f[9])] = (proto, _decode_address(addr, proto.endswith("6")), int(port, 16))
    return out


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def listeners(pids: Iterable[int]) -> list[Listener]:
    """Every listening socket held by any of ``pids`` (processes that are gone are skipped)."""
    out: list[Listener] = []
    tables: dict[str, dict[int, tuple[str, str, int]]] = {}
    for pid in sorted(set(pids)):
        try:
            netns = os.readlink(f"/proc/{pid}/ns/net")
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        if netns not in tables:
            tables[netns] = _socket_table(pid)
        table = tables[netns]
        name = _process_name(pid)
        seen: set[int] = set()
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            inode = int(target[8:-1])
            if inode in table and inode not in seen:
                seen.add(inode)
                proto, addr, port = table[inode]
                out.append(Listener(pid, name, proto, addr, port))
    return out


def exposed(pids: Iterable[int]) -> list[Listener]:
    """The listening sockets of ``pids`` that are not bound to loopback only."""
    return [s for s in listeners(pids) if not s.loopback]


def url_ports(url: str | None) -> list[int]:
    """The port of a URL the user configured to listen on (e.g. the Prometheus endpoint), to be
    allowed beyond loopback; none without a URL or a port.

    Example:
        >>> url_ports("http://0.0.0.0:9464/metrics"), url_ports(None)
        ([9464], [])
    """
    if not url:
        return []
    return [p] if (p := urlsplit(url).port) else []
