"""The foundation every layer builds on: configs and their validators, the Task/Outcome/Executor protocol,
trajectories, the msgpack codec and checkpoint files, telemetry, redaction and progress.
"""
