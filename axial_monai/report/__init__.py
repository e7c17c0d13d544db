"""One self-contained HTML report per run (training, cross-validation, explanations): ``axial-monai report``."""

from .builder import METRIC_LABELS, ReportOptions, build_report, write_report
from .runs import find_run_contents, read_scalars

__all__ = ["METRIC_LABELS", "ReportOptions", "build_report", "write_report", "find_run_contents", "read_scalars"]
