"""Every Triton behind one name: ``host:port[,host:port...]`` resolved to each address.

On Kubernetes a headless Service's name resolves to the address of every ready Triton pod, so
resolving it again on every look follows the pods as they come and go (see the model keeper).
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def resolve_peers(spec: str) -> list[str]:
    """Control URLs (``http://address:port``) of every address each ``host:port`` names."""
    urls: set[str] = set()
    for item in filter(None, (s.strip() for s in spec.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Triton peers: {item!r} is not host:port")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:  # no pod ready yet, or DNS is down: no peer this time
            log.warning("Triton peers: cannot resolve %s: %s", host, exc)
            continue
        for family, *_, address in infos:
            ip = f"[{address[0]}]" if family == socket.AF_INET6 else address[0]
            urls.add(f"http://{ip}:{port}")
    return sorted(urls)
