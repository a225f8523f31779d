"""``python -m memkube`` is the ``memkube`` command."""

import sys

from .cli import main

sys.exit(main())
