"""``python -m swarm_sona`` is the ``swarm-sona`` command."""

import sys

from swarm_sona.cli import main

sys.exit(main())
