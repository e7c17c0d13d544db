"""The QC gate: a preprocessed scan whose registration failed is refused, not passed on with a warning.

A failed registration still writes an image on the template grid; a model fed that image answers with a confident
probability. The gate looks at the QC figures of the preprocessing (:mod:`axial_monai.preprocess.pipeline`,
:mod:`axial_monai.preprocess.fast`) and refuses the scan when one of them is out of the range that successful
registrations reach:

* ``template_correlation``: Pearson's r of the result with the template inside the template's brain. Good
  registrations of real heads reach 0.86-0.90 (both profiles, ``benchmarks/preprocess_profiles.py``); a head squeezed
  into the brain, half a head or noise stays far below; an inverted contrast is negative.
* ``mask_dice``: deepbet's brain mask, found on the raw scan without the template, carried by the
  registration onto the template grid, against the template's brain mask. It is the one figure that does not come
  from the registration's own objective: a registration that matched the scalp to the brain moves deepbet's brain
  away from the template's.
* ``jacobian_min`` (off by default): a warp that folds (a determinant at or below 0) is not a deformation of one
  brain into another. The injected failures of ``tests/test_qc_gate.py`` reach 0, but so do good registrations of
  the blurry pydeface mean head, locally (``benchmarks/preprocess_robustness.py``); the two figures above catch every
  injected failure, so the Jacobian is reported and not gated unless asked (``QCGate(min_jacobian=...)``).

The thresholds and the measurements behind them are in ``bundle/docs/preprocessing.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = ["QCGate", "QCRefusedError", "DEFAULT_GATE"]


class QCRefusedError(InputError):
    """A scan refused by the QC gate; ``picture`` is its QC picture, where one was drawn."""

    def __init__(self, message: str, picture: Path | None = None) -> None:
        super().__init__(message)
        self.picture = picture


@dataclass(frozen=True)
class QCGate:
    """Limits on the QC figures of one preprocessed scan.

    Attributes:
        min_template_correlation: lowest Pearson's r with the template inside its brain.
        min_mask_dice: lowest Dice of the scan's own brain mask carried onto the template (when measured).
        min_jacobian: the Jacobian determinant of the warp must stay above this (when measured); None: not
            checked.
    """

    min_template_correlation: float = 0.5
    min_mask_dice: float = 0.8
    min_jacobian: float | None = None

    def refusal(self, metrics: Mapping[str, float | None]) -> str | None:
        """Why the scan with these QC figures is refused (the figure, its value and the limit), or None if it
        passes. A figure the profile does not measure is not checked."""
        limits = (
            ("template_correlation", "correlation with the template", self.min_template_correlation),
            ("mask_dice", "Dice of its brain mask with the template's after registration", self.min_mask_dice),
            ("jacobian_min", "smallest Jacobian of the warp", self.min_jacobian),
        )
        for key, name, limit in limits:
            value = metrics.get(key)
            if limit is not None and value is not None and not float(value) > limit:
                return f"failed the QC gate: {key} {float(value):.3f}, not above {limit} ({name})"
        return None

    def check(self, path: str, metrics: Mapping[str, float | None], picture: Path | None = None) -> None:
        """Raise a :class:`QCRefusedError` naming the scan at ``path``, the failed figure, what to try and the QC
        ``picture`` (where it exists), if the scan is refused."""
        refusal = self.refusal(metrics)
        if refusal:
            drawn = picture if picture is not None and picture.is_file() else None
            shown = f" QC picture: {drawn}." if drawn is not None else ""
            raise QCRefusedError(
                f"{path}: {refusal}. Check that it is a whole-head T1 scan (contrast, field of view), or try the "
                f"other preprocessing profile (--profile).{shown}",
                drawn,
            )


#: the gate of ``axial-monai preprocess`` and ``axial-monai predict``.
DEFAULT_GATE = QCGate()
