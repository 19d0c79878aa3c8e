"""Shared test fixtures.

Ray tests: use the ``ray_session`` fixture pattern (one session per module, 127.0.0.1 only,
no dashboard); see tests/ray_session.py.
"""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
