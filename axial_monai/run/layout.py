"""Where the files of a trained model are: in a run folder, and in an exported bundle (:mod:`axial_monai.layout`,
which the lower layers read too)."""

from __future__ import annotations

from ..layout import BundleLayout, CrossvalLayout, RunLayout

__all__ = ["BundleLayout", "CrossvalLayout", "RunLayout"]
