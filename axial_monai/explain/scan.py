"""Explain one scan: every requested voxel map of one volume, as a pure function returning a result object.

:func:`explain_scan` runs the network on one volume and computes the maps named in ``ExplainSettings.methods``;
it writes nothing (see :class:`~axial_monai.explain.writer.ExplanationWriter`) and keeps no state between scans.

Maps (all ``(X, Y, Z)`` float32 on the input grid, min-max to [0, 1], 0 outside the brain -- voxels with a non-zero
input, as the bundle's normalisation zeroes the background -- and outside the voxels the network reads):

=================================== ====================================================================================
``attention``                       slice attention at the slice positions (product of the plane profiles for a
                                    tri-planar model): which slices the network pools, constant within a slice
``gradcam``, ``gradcampp``          per-slice 2D (Grad)CAM++ of the backbone's last feature layer, resized to the
                                    slice, stacked, planes multiplied (``monai.visualize``); as coarse as that layer
``attention_cam``                   each slice's GradCAM times its attention weight, planes multiplied
``gradient``                        ``|d logit / d voxel|``, voxel-level (captum, see :mod:`.attribution`), with the
                                    network's resampling pattern divided out (``antialias``)
``smoothgrad``                      mean ``|gradient|`` over noisy copies of the scan
``integrated_gradients``            the default: the positive part of ``(input - baseline) x mean gradient`` along the
                                    path from the run's mean control scan (evidence for the class against a typical
                                    control); ``ig_sign="absolute"``: its magnitude
``occlusion``                       ``|logit change|`` when a 3D window is replaced by the baseline
``attention_<voxel method>``        the voxel map times the attention volume (``attention_gradient``, ...)
=================================== ====================================================================================

The gradient maps already carry the attention: the logit reaches a voxel through each slice that contains it,
weighted by that slice's attention. Their ``attention_*`` variants weight by it a second time, which sharpens a
map towards the high-attention slices (and, for a tri-planar model, restricts it to the box the three slabs share).
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.visualize import GradCAM, GradCAMpp
from torch import nn

from ..errors import SettingsError
from ..io import nifti_stem
from . import attribution
from .volumes import CAM_NORMALIZATIONS, attention_volume, attention_weighted_cam, cam_volume, combine_planes, minmax

__all__ = [
    "CAM_METHODS",
    "VOXEL_METHODS",
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_METHODS",
    "CONTROLS",
    "ExplainSettings",
    "ScanExplanation",
    "explain_scan",
    "scan_id",
]

#: per-slice CAM methods (monai.visualize) and the attention-weighted GradCAM.
CAM_METHODS = ("gradcam", "gradcampp", "attention_cam")
#: attribution methods on the input volume (captum), each with an ``attention_`` variant.
VOXEL_METHODS = ("gradient", "smoothgrad", "integrated_gradients", "occlusion")
#: every map :func:`explain_scan` can make.
METHODS = ("attention", *CAM_METHODS, *VOXEL_METHODS, *(f"attention_{m}" for m in VOXEL_METHODS))
#: the default voxel map: Integrated Gradients from the run's mean control scan, positive part (the defaults of
#: :class:`ExplainSettings`); it localises the planted atrophy best in ``benchmarks/explain_groundtruth.py``
#: (bundle/docs/README.md has the table).
DEFAULT_METHOD = "integrated_gradients"
#: the bundle's default maps: the slice attention and :data:`DEFAULT_METHOD`.
DEFAULT_METHODS = ("attention", DEFAULT_METHOD)

_CAMS = {"gradcam": GradCAM, "gradcampp": GradCAMpp}
# one CAM object per (network, kind): MONAI registers hooks at construction and never removes them
_CAM_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


#: output folder name of a scan with no datalist id: its file name without the NIfTI extension
scan_id = nifti_stem


#: the baseline name of the run's mean control scan (``ExplainSettings.control_mean``).
CONTROLS = "controls"
#: the methods that use each baseline setting.
_BASELINE_USERS = {
    "ig_baseline": ("integrated_gradients", "attention_integrated_gradients"),
    "occlusion_baseline": ("occlusion", "attention_occlusion"),
}


def _baseline_spec(value, name: str):
    if isinstance(value, str) and value not in (*attribution.BASELINES, CONTROLS) and not os.path.isfile(value):
        raise ValueError(
            f"{name} must be one of {(*attribution.BASELINES, CONTROLS)} or the path of a NIfTI volume, not {value!r}."
        )
    return value


def _no_controls(name: str) -> SettingsError:
    return SettingsError(
        f"{name}={CONTROLS!r} (the default) is the mean control scan of the model's training run, or without one the "
        "template's brain (template_baseline, which the bundle configs pass), and neither was given: training stores "
        "the mean in the checkpoint since axial-monai 0.2.5. Add it to an older checkpoint from its "
        "training scans (axial-monai attach-controls RUN, or axial_monai.run.migrate.attach_control_mean), or choose "
        f"another baseline ({name}: {' or '.join(attribution.BASELINES)} or a NIfTI path; for Integrated Gradients "
        "also ig_sign: "
        "absolute) or another method (e.g. methods: ['attention', 'smoothgrad'])."
    )


@dataclass(frozen=True)
class ExplainSettings:
    """What :func:`explain_scan` computes, checked on construction (so a bundle fails before the first scan).

    Args:
        methods: maps to compute, among :data:`METHODS`; at least one.
        target_class: class explained; None for each scan's predicted class.
        cam_normalization: ``"volume"`` (one min-max per plane, keeps the contrast between slices) or ``"slice"``
            (the paper) for the CAM maps.
        smoothgrad_samples: noisy copies of SmoothGrad.
        smoothgrad_noise: SmoothGrad noise standard deviation, as a fraction of the scan's intensity range.
        ig_steps: path points of Integrated Gradients.
        ig_baseline: Integrated Gradients baseline: ``"controls"`` (default: ``control_mean``, the run's mean control
            scan), ``"zeros"``, ``"blur"`` or a NIfTI path (input grid, normalised as the inputs, e.g. written by
            :func:`~axial_monai.explain.attribution.mean_scan`).
        ig_sign: ``"positive"`` (default: the positive part of the attribution, the voxels that raise the explained
            class's logit relative to the baseline) or ``"absolute"`` (its magnitude; with ``"zeros"`` the map of
            axial-monai before 0.2.5).
        occlusion_window_mm: side of the occlusion window in mm (rounded to whole voxels, at least 1).
        occlusion_stride_mm: occlusion window step in mm; None for the window (no overlap).
        occlusion_baseline: what an occluded window shows: ``"zeros"``, ``"blur"``, ``"controls"`` or a NIfTI path.
        control_mean: the run's mean control scan, ``(X, Y, Z)`` on the input grid and normalised as the inputs
            (``RunSettings.control_mean``, which training stores in the checkpoint), or its NIfTI path: the
            ``"controls"`` baseline.
        template_baseline: the model's template brain normalised as the inputs (``RunSettings.template_input()``),
            or its NIfTI path: the ``"controls"`` baseline of a model without a mean control scan (an exported
            bundle carries none unless asked to: it is derived from training subjects). A ``"controls"`` baseline
            of a requested method with neither is refused.
        batch_size: noisy copies, path points or occluded volumes per forward pass.
        seed: seed of the SmoothGrad noise (the global torch generator is restored afterwards).
        antialias: how the gradient, SmoothGrad and Integrated Gradients maps lose the network's resampling
            pattern (see :mod:`.attribution`): ``"normalized"`` (default: it ranks the planted region first most
            often in ``benchmarks/explain_groundtruth.py``) divides the pattern out (normalised convolution by the
            read weight, at a quarter of the step); True smooths them in-plane by a Gaussian of half the sampling
            step; False keeps the raw maps.
    """

    methods: Sequence[str] = DEFAULT_METHODS
    target_class: int | None = None
    cam_normalization: str = "volume"
    smoothgrad_samples: int = 8
    smoothgrad_noise: float = 0.1
    ig_steps: int = 8
    ig_baseline: str = CONTROLS
    ig_sign: str = "positive"
    occlusion_window_mm: float = 16.0
    occlusion_stride_mm: float | None = None
    occlusion_baseline: str = "zeros"
    control_mean: np.ndarray | str | os.PathLike | None = field(default=None, compare=False, repr=False)
    template_baseline: np.ndarray | str | os.PathLike | None = field(default=None, compare=False, repr=False)
    batch_size: int = 4
    seed: int = 0
    antialias: bool | str = "normalized"

    def __post_init__(self) -> None:
        methods = [self.methods] if isinstance(self.methods, str) else list(self.methods)
        if not methods:
            raise ValueError(f"methods must name at least one map among {list(METHODS)}, not an empty list.")
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown explanation method(s) {unknown}; choose among {list(METHODS)}.")
        object.__setattr__(self, "methods", tuple(dict.fromkeys(methods)))
        if self.cam_normalization not in CAM_NORMALIZATIONS:
            raise ValueError(f"cam_normalization must be one of {CAM_NORMALIZATIONS}, not {self.cam_normalization!r}.")
        if self.target_class is not None and (isinstance(self.target_class, bool) or int(self.target_class) < 0):
            raise ValueError(f"target_class must be None or a class index >= 0, not {self.target_class!r}.")
        for name in ("smoothgrad_samples", "ig_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}.")
        if not (isinstance(self.smoothgrad_noise, int | float) and self.smoothgrad_noise >= 0):
            raise ValueError(
                f"smoothgrad_noise must be a fraction >= 0 of the intensity range, not {self.smoothgrad_noise!r}."
            )
        for name in ("occlusion_window_mm", "occlusion_stride_mm"):
            value = getattr(self, name)
            if value is None and name == "occlusion_stride_mm":
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive length in mm, not {value!r}.")
        if self.occlusion_stride_mm is not None and self.occlusion_stride_mm > self.occlusion_window_mm:
            raise ValueError(
                f"occlusion_stride_mm ({self.occlusion_stride_mm}) must not exceed occlusion_window_mm "
                f"({self.occlusion_window_mm}): voxels between windows would never be occluded."
            )
        if not (isinstance(self.antialias, bool) or self.antialias == "normalized"):
            raise ValueError(f"antialias must be true, false or 'normalized', not {self.antialias!r}.")
        if self.ig_sign not in attribution.IG_SIGNS:
            raise ValueError(f"ig_sign must be one of {attribution.IG_SIGNS}, not {self.ig_sign!r}.")
        for name, users in _BASELINE_USERS.items():
            value = _baseline_spec(getattr(self, name), name)
            stand_ins = (self.control_mean, self.template_baseline)
            controls = isinstance(value, str) and value == CONTROLS
            if controls and all(v is None for v in stand_ins) and set(users) & set(methods):
                raise _no_controls(name)
        for name in ("control_mean", "template_baseline"):
            value = getattr(self, name)
            if isinstance(value, str | os.PathLike) and not os.path.isfile(value):
                raise ValueError(f"{name} {os.fspath(value)!r} is not a file (a NIfTI volume on the input grid).")

    def baseline(self, name: str) -> str | os.PathLike | np.ndarray:
        """The reference volume of the baseline setting ``name`` (``"ig_baseline"``, ``"occlusion_baseline"``):
        for ``"controls"`` :attr:`control_mean`, or :attr:`template_baseline` without one; else the setting (see
        :func:`~.attribution.make_baseline`)."""
        value = getattr(self, name)
        if isinstance(value, str) and value == CONTROLS:
            stand_in = self.control_mean if self.control_mean is not None else self.template_baseline
            if stand_in is None:
                raise _no_controls(name)
            return stand_in
        return value

    def baselines(self) -> dict[str, str]:
        """What each baseline setting of the requested methods means, in words: ``explanation.json`` records it."""
        described = {}
        for name, users in _BASELINE_USERS.items():
            if not set(users) & set(self.methods):
                continue
            value = getattr(self, name)
            if not (isinstance(value, str) and value == CONTROLS):
                described[name] = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            elif self.control_mean is not None:
                described[name] = "controls: the mean control scan of the model's training run"
            else:
                described[name] = (
                    "template: the model carries no mean control scan (none is shared without the exporter's "
                    "consent: it is derived from training subjects), so the template's brain, normalised as the "
                    "inputs, stands in for it"
                )
        return described

    def voxels(self, length_mm: float, spacing: Sequence[float]) -> tuple[int, int, int]:
        """A length in mm as whole voxels per axis (at least 1) for a grid of ``spacing`` mm."""
        return tuple(max(1, round(float(length_mm) / float(s))) for s in spacing)  # type: ignore[return-value]


@dataclass
class ScanExplanation:
    """The explanation of one scan (what :func:`explain_scan` returns).

    Attributes:
        scan_id: name of the scan (file name without NIfTI extension).
        affine: ``(4, 4)`` voxel-to-world affine of the input.
        image: ``(X, Y, Z)`` float32, the network's input (after the bundle's normalisation).
        maps: method -> ``(X, Y, Z)`` float32 map in [0, 1] (see the module docstring).
        attention: plane -> ``(N_p,)`` slice attention.
        indices: plane -> the ``N_p`` slice positions along that axis.
        probabilities: ``(C,)`` softmax of the logits.
        prediction: predicted class index.
        target: class index the maps explain.
        support: ``(X, Y, Z)`` bool, brain voxels the network reads (the maps are 0 elsewhere).
        label: true class index, when known.
        baselines: what the baselines of the maps were (:meth:`ExplainSettings.baselines`).
    """

    scan_id: str
    affine: np.ndarray
    image: np.ndarray
    maps: dict[str, np.ndarray]
    attention: dict[int, np.ndarray]
    indices: dict[int, range]
    probabilities: np.ndarray
    prediction: int
    target: int
    support: np.ndarray
    label: int | None = None
    baselines: dict[str, str] = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]


def _cam(network: nn.Module, kind: str) -> GradCAM:
    per_net = _CAM_CACHE.setdefault(network, {})
    if kind not in per_net:
        per_net[kind] = _CAMS[kind](nn_module=network, target_layers=network.cam_layer)
    return per_net[kind]


def _cam_maps(network, x, target, names, att, indices, shape, normalization) -> dict[str, np.ndarray]:
    """GradCAM(++) volumes and the attention-weighted GradCAM, from one ``compute_map`` per CAM kind."""
    planes = sorted(indices)
    maps = {}
    for kind in ("gradcam", "gradcampp"):
        wanted = kind in names or (kind == "gradcam" and "attention_cam" in names)
        if not wanted:
            continue
        raw = torch.as_tensor(_cam(network, kind).compute_map(x, class_idx=target, layer_idx=-1)).detach().cpu()
        per_plane = raw.split([len(indices[p]) for p in planes])
        if kind in names:
            maps[kind] = combine_planes(
                [cam_volume(c, p, indices[p], shape, normalization) for c, p in zip(per_plane, planes)]
            )
        if kind == "gradcam" and "attention_cam" in names:
            weighted = [
                attention_weighted_cam(c, att[p], p, indices[p], shape, normalization)
                for c, p in zip(per_plane, planes)
            ]
            maps["attention_cam"] = combine_planes(weighted)
    return maps


def _voxel_map(method, network, x, target, settings: ExplainSettings, spacing, support) -> np.ndarray:
    if method == "gradient":
        return attribution.gradient_map(network, x, target)
    if method == "smoothgrad":
        return attribution.smoothgrad_map(
            network, x, target, settings.smoothgrad_samples, settings.smoothgrad_noise, settings.batch_size
        )
    if method == "integrated_gradients":
        return attribution.integrated_gradients_map(
            network, x, target, settings.ig_steps, settings.baseline("ig_baseline"), settings.batch_size,
            settings.ig_sign,
        )  # fmt: skip
    window = settings.voxels(settings.occlusion_window_mm, spacing)
    stride = settings.voxels(settings.occlusion_stride_mm or settings.occlusion_window_mm, spacing)
    return attribution.occlusion_map(
        network, x, target, window, tuple(min(s, w) for s, w in zip(stride, window)),
        settings.baseline("occlusion_baseline"),
        settings.batch_size, support,
    )  # fmt: skip


def _antialiaser(network: nn.Module, shape: tuple[int, int, int], mode: bool | str) -> Callable | None:
    """The map -> map step of ``ExplainSettings.antialias`` for this network and grid (None: nothing to do)."""
    sigma = attribution.sampling_sigma(network, shape)
    if not mode or not any(sigma):  # no axis downsampled: no resampling pattern to remove
        return None
    if mode == "normalized":
        weight, half = attribution.read_weight(network, shape), tuple(s / 2 for s in sigma)
        return lambda voxel: attribution.normalized_antialias(voxel, weight, half)
    return lambda voxel: attribution.antialias(voxel, sigma)


@torch.no_grad()
def explain_scan(
    network: nn.Module,
    image: torch.Tensor,
    settings: ExplainSettings | None = None,
    label: int | None = None,
    name: str | None = None,
) -> ScanExplanation:
    """Compute the explanation maps of one scan; nothing is written and no state is kept.

    Args:
        network: ``AxialNet``, ``TriPlanarAxialNet`` or any network with ``plane_attention``, ``slice_indices`` and
            ``cam_layer`` (a DDP wrapper is unwrapped); it is put in eval mode for the call and restored after.
        image: one volume ``(1, X, Y, Z)`` as the bundle loads it (a MetaTensor carries its affine and file name;
            a plain tensor gets an identity affine).
        settings: what to compute (:class:`ExplainSettings`); default: :data:`DEFAULT_METHODS`, whose Integrated
            Gradients needs the run's mean control scan: pass ``ExplainSettings(control_mean=...)``.
        label: true class index, kept in the result.
        name: scan id; default: from the image's file name.

    Returns:
        :class:`ScanExplanation`.

    Raises:
        ValueError: if ``image`` is not one 3D volume ``(1, X, Y, Z)``.
    """
    settings = settings or ExplainSettings()
    network = getattr(network, "module", network)
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] != 1:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be one volume of shape (1, X, Y, Z), not {shape}.")
    meta = getattr(image, "meta", {}) or {}
    affine = np.asarray(getattr(image, "affine", np.eye(4)), dtype=np.float64)
    sid = name or scan_id(meta.get("filename_or_obj") or "scan")
    device = next(network.parameters()).device
    x = torch.as_tensor(image).as_subclass(torch.Tensor)[None].to(device, torch.float32)
    shape = tuple(int(s) for s in x.shape[2:])
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))

    was_training = network.training
    network.eval()
    try:
        logits, attention = network.plane_attention(x)
        probabilities = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
        prediction = int(probabilities.argmax())
        target = prediction if settings.target_class is None else int(settings.target_class)
        if target >= probabilities.size:
            raise ValueError(f"target_class {target} does not exist: the network has {probabilities.size} classes.")
        indices = network.slice_indices(shape)
        att = {p: a[0].detach().float().cpu().numpy() for p, a in attention.items()}
        image_np = x[0, 0].cpu().numpy()
        support = attribution.read_mask(network, shape) & (image_np != 0)
        att_volume = minmax(attention_volume(att, indices, shape))

        raw: dict[str, np.ndarray] = {}
        methods = settings.methods
        if "attention" in methods:
            raw["attention"] = att_volume
        with torch.enable_grad():
            raw.update(_cam_maps(network, x, target, methods, att, indices, shape, settings.cam_normalization))
        smooth = _antialiaser(network, shape, settings.antialias)  # once per scan, shared by the voxel methods
        generator = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        with generator:
            torch.manual_seed(settings.seed)
            for method in VOXEL_METHODS:
                if method in methods or f"attention_{method}" in methods:
                    voxel = _voxel_map(method, network, x, target, settings, spacing, support)
                    if smooth is not None and method != "occlusion":
                        voxel = smooth(voxel)
                    if method in methods:
                        raw[method] = voxel
                    if f"attention_{method}" in methods:
                        raw[f"attention_{method}"] = voxel * att_volume
    finally:
        network.train(was_training)
    maps = {m: minmax(raw[m] * support) for m in methods}
    return ScanExplanation(
        scan_id=sid,
        affine=affine,
        image=image_np.astype(np.float32),
        maps=maps,
        attention=att,
        indices=indices,
        probabilities=probabilities,
        prediction=prediction,
        target=target,
        support=support,
        label=None if label is None else int(label),
        baselines=settings.baselines(),
    )
