"""Deprecated alias of :mod:`axial_monai.run` (moved in 0.3.0; this module goes in 0.4.0)."""

import warnings

from .run import *  # noqa: F401, F403
from .run import __all__ as _run_all
from .run.migrate import attach_control_mean, attach_run_settings

__all__ = [*_run_all, "attach_control_mean", "attach_run_settings"]

warnings.warn(
    "axial_monai.run_settings is deprecated: import from axial_monai.run (axial_monai.run.migrate for "
    "attach_run_settings and attach_control_mean).",
    DeprecationWarning,
    stacklevel=2,
)
