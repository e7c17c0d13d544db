"""The AXIAL paper's comparison table on any cohort: every model cross-validated on the same folds, with confidence
intervals, paired tests, double transfer learning and the cost of each model.

:func:`run_benchmark` (command line: ``axial-monai benchmark``) runs, for each model of :data:`MODELS`, the
subject-wise cross-validation of :mod:`axial_monai.crossval` into ``OUT/<model>/`` (same table, seed and ``k``:
the same folds, which is checked), then, with a conversion table, the conversion task twice, from ImageNet and from
the reference model's fold of the first task (double transfer, fold-matched and leakage-checked by the runner).
Each run resumes per fold. It writes into ``OUT``:

* ``paper_table.md``: the table (pooled out-of-fold estimates at the subject level with 95 % bootstrap intervals
  over subjects, the per-fold mean and sd, parameters and seconds), the paired tests against the reference model,
  double transfer against ImageNet, the explanation consistency between folds, the command and the machine;
* ``paper_table.csv`` (one row per model and metric), ``comparisons.csv`` (the paired tests), ``cost.csv``;
* ``paper_table.png``: the ROC curve of each model and each metric's interval per model.

The statistics are those of :mod:`axial_monai.crossval.compare` (DeLong for AUC, McNemar's exact test for accuracy,
Holm over the baselines).
"""

from .document import markdown_table
from .models import MODELS, REFERENCE, Model, model_overrides
from .protocol import cohort_tables, datalist_table, double_transfer, model_cost, run_benchmark

__all__ = [
    "MODELS",
    "REFERENCE",
    "Model",
    "cohort_tables",
    "datalist_table",
    "double_transfer",
    "markdown_table",
    "model_cost",
    "model_overrides",
    "run_benchmark",
]
