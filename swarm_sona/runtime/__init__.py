"""The Ray runtime: starting or joining Ray, what its processes listen on, and cleaning up after a crash.

This is the layer that talks to Ray's process model; the learning core, the bank and the
routing code know nothing of it.
"""
