"""cil: the Class Imbalance (CI) loss and its uses, in JAX.

Modules, by layer, lowest first: each imports only from the layers
before it in this list (modules on one line are independent of one
another); `setup.cfg`'s import-linter contracts check it.

  cil.errors: the errors that stop a run (imports nothing of cil).
  cil.losses: imbalance measures, the CI loss, its peers and a registry
    (the families in the private cil._losses).
  cil.models, cil.metrics, cil.loops: LeNet, a digits CNN, A-ConvNets,
    CIFAR ResNet-32, Conv4; classification metrics and confidence
    intervals; a loop structure that XLA:CPU runs fast.
  cil.runtime: the backend policy and the runtime record of a run.
  cil.distributed, cil.data, cil.detection: processes and devices
    (jax.distributed, meshes); datasets through TFDS, imbalance protocols,
    episodic tasks; rotated boxes, detection metrics, R2CNN and the
    rotated Cascade R-CNN, DOTA/HRSC readers, synthetic harbour scenes.
  cil.maml: MAML with per-task class counts, multi-device.
  cil.workdir: the workdir scaffold every runner shares (lock, verified
    checkpoints, non-finite guard, metrics logs).
  cil.plots: figures (Fig. 2, per-class recall, accuracy against lambda).
  cil.experiments: the runners (classify, fewshot, detect), their one cell
    loop and their report tables.

The base install covers cil.losses, cil.maml and cil.models; the rest needs
the `experiments` extra (`pip install 'cil[all]'`).
"""

__version__ = '0.3.0'
