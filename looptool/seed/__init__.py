"""Seed construction (paper §3): trees -> API synthesis -> four-agent dialogues ->
two-tier verification -> samples (D_seed), with optional label-noise injection.

Modules: trees (context/constraint trees), apis (synthesis + rule validation), imports
(OpenAI tools JSON / BFCL docs), plan (the planner's output), agents (simulation),
templates (template-backend tasks), verify, samples, noise, pipeline (the stages).
"""
