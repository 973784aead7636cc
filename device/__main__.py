"""``python -m device`` runs the command line."""

import sys

from device.cli import main

sys.exit(main())
