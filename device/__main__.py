"""``python -m device`` runs the command line."""

import sys

from device.apps.cli import main

sys.exit(main())
