"""The application layer: the ``swarm-sona`` CLI, its commands, run specs, agent definitions and reports.
"""
