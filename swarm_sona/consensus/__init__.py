"""Consensus learning: merge rules, the MergeBook, parameter spaces, wire messages and topologies.
"""
