"""Evaluation: official metrics, zero-shot evaluation per language, result tables."""
