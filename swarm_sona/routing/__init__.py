"""The learned LLM router: model specs, strategies, the contextual bandit and its constraints.
"""
