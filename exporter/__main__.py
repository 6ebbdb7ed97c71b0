"""``python -m exporter``: the same as the ``signalwire-video-exporter`` command."""

import sys

from .cli import main

sys.exit(main())
