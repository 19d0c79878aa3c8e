"""The learning core: LoRA adapters, the model they adapt, optimisers and EWC++. Knows nothing of Ray,
the bank or the CLI.
"""
