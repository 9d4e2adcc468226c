"""cil: the Class Imbalance (CI) loss and its uses, in JAX.

Modules:
  cil.losses: imbalance measures, the CI loss, its peers and a registry.
  cil.data: datasets through TFDS, imbalance protocols, episodic tasks.
  cil.models: LeNet, a digits CNN, A-ConvNets, MAML's Conv4.
  cil.classify: imbalanced classification experiments (Tables I, III).
  cil.maml: MAML with per-task class counts, multi-device.
  cil.fewshot: imbalanced few-shot experiments (Table IV, Fig. 5).
  cil.metrics: classification metrics and confidence intervals.
  cil.plots: Fig. 2.
"""

__version__ = '0.1.0'
