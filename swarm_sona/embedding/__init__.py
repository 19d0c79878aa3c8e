"""Text -> vector embedders (the hashing embedder on the native kernels, sentence-transformers).
"""
