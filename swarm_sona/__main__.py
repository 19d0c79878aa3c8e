"""``python -m swarm_sona`` is the ``swarm-sona`` command."""

import sys

from swarm_sona.app.cli import main

sys.exit(main())
