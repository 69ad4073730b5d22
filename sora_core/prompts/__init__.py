"""Prompts: expansion of a short user prompt into a detailed caption of the training distribution."""
