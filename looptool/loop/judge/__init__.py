"""The judge cascade (JGLV, paper step c): rule tiers, LLM tier, relabel and metrics."""
