"""Rotated-box detection: geometry, metrics and ship data (the paper's IV-C)."""
