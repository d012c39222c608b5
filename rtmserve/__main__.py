"""``python -m rtmserve ...``: the same as the ``rtmserve`` command."""

import sys

from rtmserve.cli import main

sys.exit(main())
