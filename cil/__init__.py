"""cil: the Class Imbalance (CI) loss and its uses, in JAX.

Modules:
  cil.losses: imbalance measures, the CI loss, its peers and a registry.
  cil.data: datasets through TFDS, imbalance protocols, episodic tasks.
  cil.models: LeNet, a digits CNN, A-ConvNets, MAML's Conv4.
  cil.classify: imbalanced classification experiments (Tables I, III).
  cil.maml: MAML with per-task class counts, multi-device.
  cil.fewshot: imbalanced few-shot experiments (Table IV, Fig. 5).
  cil.metrics: classification metrics and confidence intervals.
  cil.plots: every figure (Fig. 2, per-class recall, accuracy against
    lambda, detections), PNG + PDF + CSV.
  cil.workdir: the workdir scaffold every runner shares (lock, verified
    checkpoints, non-finite guard, metrics logs).
  cil.runtime: the backend policy, decided once, and the runtime record.
  cil.detection: rotated boxes, metrics, R2CNN.

The base install covers cil.losses, cil.maml and cil.models; the rest needs
the `experiments` extra (`pip install 'cil[all]'`).
"""

__version__ = '0.1.0'
