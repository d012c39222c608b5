"""``python -m service.models ...``: the models commands without the full rtmserve CLI."""

import sys

from .cli import main

sys.exit(main())
