"""The processes and sockets of a running service, read from /proc: tritonserver, its
Python-backend stubs, orphans, and where ports listen."""

from __future__ import annotations

import ipaddress
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
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(words)))
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
