"""Subject-wise k-fold cross-validation of the bundle, with leakage guards and double transfer learning.

Use :func:`run_cross_validation` from Python or ``python -m axial_monai.crossval BIDS_DIR OUT_DIR`` from a shell.
"""

from ..scores import LEVELS, baseline_scans, join_predictions, level_scores, summarize
from .leakage import check_no_leakage, check_transfer_leakage, split_subjects
from .runner import RUNNER_KEYS, TRAIN_CONFIG, fold_dir, run_cross_validation, run_fold
from .splits import SPLITS, assign_folds, make_folds, split_fold

__all__ = [
    "check_no_leakage",
    "check_transfer_leakage",
    "split_subjects",
    "RUNNER_KEYS",
    "TRAIN_CONFIG",
    "fold_dir",
    "run_cross_validation",
    "run_fold",
    "LEVELS",
    "baseline_scans",
    "join_predictions",
    "level_scores",
    "summarize",
    "SPLITS",
    "assign_folds",
    "make_folds",
    "split_fold",
]
