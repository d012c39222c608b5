"""The processes and sockets of a running service, read from /proc: tritonserver, its
Python-backend stubs, orphans, and where ports listen."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from rtmserve.launch import ServiceProcess


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    argv: tuple[str, ...]


def processes() -> list[Proc]:
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv_s = tuple(a.decode(errors="replace") for a in argv if a)
        out.append(Proc(int(d.name), int(fields[1]), int(fields[2]), fields[0], argv_s))
    return out


def tritonserver(service: ServiceProcess) -> Proc | None:
    flag = f"--model-repository={service.repository}"
    found = [
        p
        for p in processes()
        if p.argv and p.argv[0].endswith("tritonserver") and flag in p.argv and p.state != "Z"
    ]
    return found[0] if found else None


def stubs(service: ServiceProcess) -> list[Proc]:
    """Live Python-backend stubs started from this service's backend folder."""
    binary = str(service.home / "triton" / "backends" / "python" / "triton_python_backend_stub")
    return [p for p in processes() if p.argv and p.argv[0] == binary and p.state != "Z"]


def orphans(service: ServiceProcess) -> list[Proc]:
    """Stubs not in the process group of the running tritonserver (or any, without one)."""
    server = tritonserver(service)
    return [p for p in stubs(service) if server is None or p.pgid != server.pid]


def listening(port: int) -> set[str]:
    """The addresses a TCP port listens on (IPv4 and IPv6), from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, at = _endpoint(local).rsplit(":", 1)
            if state == "0A" and int(at) == port:  # 0A: LISTEN
                found.add(address)
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for {pid}")


@dataclass(frozen=True)
class Socket:
    kind: str  # tcp, tcp6, udp or udp6
    local: str  # address:port
    remote: str
    state: str  # the kernel's state in hex (TCP 0A: LISTEN; UDP 07: unconnected)


def _endpoint(field: str) -> str:
    """``address:port`` from /proc/net's hex (each 32-bit word in host, little-endian, order)."""
    address, port_hex = field.split(":")
    raw = bytes.fromhex(address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{ipaddress.ip_address(words)}:{int(port_hex, 16)}"


def sockets(pid: int) -> set[Socket]:
    """The TCP and UDP sockets process ``pid`` holds (its open fds matched by inode with its
    network namespace's /proc/net tables); empty once the process is gone."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        tables = {
            k: Path(f"/proc/{pid}/net/{k}").read_text() for k in ("tcp", "tcp6", "udp", "udp6")
        }
    except OSError:
        return set()
    found = set()
    for kind, table in tables.items():
        for line in table.splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.add(Socket(kind, _endpoint(fields[1]), _endpoint(fields[2]), fields[3]))
    return found


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory (VmHWM) since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmHWM for {pid}")
