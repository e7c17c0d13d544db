"""Voxel-level explanations of AXIAL models: maps from slice attention and per-slice CAMs, region tables, plots."""

from .cohort import cohort_attention_map, explainable_mri, mean_map
from .plots import PLANE_NAMES, high_attention_runs, plot_attention_profiles, plot_overlay
from .regions import (
    COHORT_COLUMNS,
    MISSING_RANK,
    REGION_COLUMNS,
    RELEVANCE_COLUMNS,
    cohort_region_table,
    rank_of,
    region_metrics,
    region_relevance,
)
from .volumes import (
    CAM_NORMALIZATIONS,
    attention_volume,
    attention_weighted_cam,
    cam_volume,
    combine_planes,
    minmax,
    place_profile,
    split_cams,
)

__all__ = [
    "CAM_NORMALIZATIONS",
    "COHORT_COLUMNS",
    "MISSING_RANK",
    "PLANE_NAMES",
    "REGION_COLUMNS",
    "RELEVANCE_COLUMNS",
    "attention_volume",
    "attention_weighted_cam",
    "cam_volume",
    "cohort_attention_map",
    "cohort_region_table",
    "combine_planes",
    "explainable_mri",
    "high_attention_runs",
    "mean_map",
    "minmax",
    "place_profile",
    "plot_attention_profiles",
    "plot_overlay",
    "rank_of",
    "region_metrics",
    "region_relevance",
    "split_cams",
]
