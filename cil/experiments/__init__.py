"""The experiment runners, side by side, above the library.

* `classify`: imbalanced classification (Tables I-III; `launch.classify`).
* `fewshot`: imbalanced few-shot MAML (Table IV, Fig. 5; `launch.fewshot`).
* `detect`: rotated-box ship detection (Tables V-VII; `launch.detect`).
* `loop`: the one cell loop they share (restore with fallback, train,
  non-finite guard, checkpoint, metrics, record).
* `report`: tables and paired statistics of their results.

Each runner's `run(cfg, workdir)` reads the backend policy once
(`cil.runtime.policy`) and resolves its config against it (`cfg.resolve`):
every backend choice (lowerings, compiler options, seed and task mapping,
loops, chunking) becomes a plain value of the frozen config, which is what
the code below `run` reads, what the workdir claims (`config.json`'s
`config`) and what a rerun compares. The policy itself, the per-cell
settings and the code's commit go into the record's `runtime`. They need
the `experiments` extra.
"""
