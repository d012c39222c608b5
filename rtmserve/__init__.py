"""rtmserve for its users: the ``rtmserve`` command line (``rtmserve.cli``), a client for a
running service (``rtmserve.client``) and a launcher for a local one (``rtmserve.launch``).

The server itself is the ``service`` package; training is ``training``. This package is where
the two meet (the command line hands training's converters to the service)."""

from service import __version__

__all__ = ["__version__"]
