"""Shared test fixtures.

Ray tests: one session per module, 127.0.0.1 only, no dashboard (each Ray test module has a
module-scoped ``ray_session`` fixture).

``swarm_sona`` is imported here, before pytest collects any doctest: with
``--import-mode=importlib`` a module whose doctests are collected first would otherwise be
executed a second time as a separate module object (two ``CheckpointError`` classes, two schema
registries).
"""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import swarm_sona  # noqa: E402,F401
