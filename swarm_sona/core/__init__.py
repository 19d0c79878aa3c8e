"""The foundation every layer builds on: the config base (ConfigBase, field_doc, validators, Secret),
the Task/Outcome/Executor protocol, trajectories, the msgpack codec and checkpoint files, the bounded
process runner, telemetry, redaction and progress. Each layer keeps its own configs in its ``config.py``.
"""
