"""The experiment runners, side by side, above the library.

* `classify`: imbalanced classification (Tables I-III; `launch.classify`).
* `fewshot`: imbalanced few-shot MAML (Table IV, Fig. 5; `launch.fewshot`).
* `detect`: rotated-box ship detection (Tables V-VII; `launch.detect`).
* `loop`: the one cell loop they share (restore with fallback, train,
  non-finite guard, checkpoint, metrics, record).
* `report`: tables and paired statistics of their results.

Each runner's `run(cfg, workdir)` decides the backend policy once
(`cil.runtime.policy`), writes the resolved per-cell settings, the policy
and the code's commit into the workdir's record, and passes concrete
values down. They need the `experiments` extra.
"""
