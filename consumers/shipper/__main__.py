"""``python -m consumers.shipper``: follow log files and send their lines to a topic."""

import sys

from .command import main

sys.exit(main())
