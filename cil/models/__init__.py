"""Flax Linen models (classification CNNs, MAML conv4); see issue 4."""
