"""Voxel attributions on the input volume: vanilla gradient, SmoothGrad, Integrated Gradients and 3D occlusion.

The networks of this package cut their slices out of the volume themselves (input ``(B, 1, X, Y, Z)`` -> logits
``(B, C)``), so a logit is a differentiable function of every voxel of the input. These methods therefore give maps
on the input grid at native resolution, unlike a CAM, whose resolution is the backbone's last feature map (2 x 2
cells per slice at 64 px for a ResNet).

Library: `captum <https://captum.ai>`_ (``Saliency``, ``NoiseTunnel``, ``IntegratedGradients``, ``Occlusion``),
chosen over ``monai.visualize`` because it *batches* the work: ``NoiseTunnel`` evaluates ``nt_samples_batch_size``
noisy copies per pass and ``IntegratedGradients`` ``internal_batch_size`` path points per pass, where MONAI's
``SmoothGrad`` runs its samples one at a time and MONAI has no Integrated Gradients; captum's ``Occlusion`` takes
any baseline tensor and ``perturbations_per_eval`` windows per pass, and all four share one call convention.

All functions take one volume ``x`` of shape ``(1, 1, X, Y, Z)`` (on the network's device) and a class index and
return a non-negative ``float32`` numpy map ``(X, Y, Z)`` on the same grid:

* ``gradient``: ``|d logit / d x|`` (Simonyan et al. 2014);
* ``smoothgrad``: the mean of ``|d logit / d x|`` over ``samples`` copies of ``x`` with Gaussian noise of standard
  deviation ``noise * (max(x) - min(x))`` (Smilkov et al. 2017);
* ``integrated_gradients``: ``|(x - x') * mean_k grad(x' + a_k (x - x'))|`` over ``steps`` Gauss-Legendre points
  ``a_k`` of the straight path from a baseline ``x'`` (Sundararajan et al. 2017); with ``sign="positive"`` the
  positive part of the signed attribution instead, the voxels that move the logit towards the class relative to the
  baseline (the signed attributions add up to ``logit(x) - logit(x')``). With a mean control scan as the baseline
  (:func:`mean_scan`) this is the evidence for the class where the scan differs from a typical control;
* ``occlusion``: ``|logit(x) - logit(x with a window replaced by the baseline)|``, averaged over the windows
  covering each voxel (Zeiler & Fergus 2014), windows of ``window`` voxels moved by ``stride`` voxels.

Absolute values (all methods but ``integrated_gradients`` with ``sign="positive"``): in the demo cohort and in
atrophy the evidence is a *loss* of intensity, so the sign of a gradient depends on the class explained and on the
contrast; localisation uses the magnitude.

Anti-aliasing: a network that shrinks its slices (e.g. 65 x 65 voxels to 32 x 32 pixels) reads each voxel with a
bilinear weight that varies from voxel to voxel in a fixed pattern; every gradient map carries that pattern, whatever
the weights. On the demo (3 mm, 32 px) it made the SmoothGrad map of a randomly initialised network correlate 0.94
(Spearman) with the pattern, and 0.45-0.5 with the trained network's map. :func:`antialias` smooths a map along the
in-plane axes with a Gaussian of half the network's sampling step (``sigma = (voxels per pixel) / 2``), the detail
the network cannot resolve; this removed that shared pattern (trained vs random: 0.02-0.10) and kept the maps' peak
in the planted atrophy (``ExplainSettings(antialias=True)``; ``antialias=False`` keeps the raw maps). Nothing is
smoothed along an axis the network does not downsample.

Normalised anti-aliasing (``ExplainSettings(antialias="normalized")``, the default of ``explain_scan``, the handler and
``explain.json``; :func:`normalized_antialias`): the Gaussian also spills relevance across region borders, which can
lift a small region next to the atrophy above it. The option divides the pattern out instead of blurring it away. A
voxel's gradient is the sum, over the backbone pixels that read it, of its bilinear weight times the pixel's gradient,
so the fixed pattern is the voxel's total read weight ``W`` (:func:`read_weight`); the map becomes ``G * |g| / G * W``
(normalised convolution, Knutsson & Westin 1993) with a Gaussian ``G`` of half the sigma above, which only regularises
the division where ``W`` is small (a 2x downsampling skips voxels).

Zero outside the voxels the network reads: the gradient of a logit with respect to a voxel outside the extracted
slices is exactly 0, and so are SmoothGrad and Integrated Gradients there. Occlusion runs only inside the bounding
box of the voxels the network reads (and of the brain), and a window that straddles the edge of a slab gives its
whole window the same value, so its raw map spills up to one window beyond the slabs: :func:`read_mask` is the
mask to apply (``explain_scan`` does). Inside a slab, a voxel can still get 0 where the network's bilinear resize
gives it no weight (downsampling a slice by 2 or more without antialiasing skips voxels).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import nibabel as nib
import numpy as np
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency
from scipy import ndimage
from torch import nn

from ..io import write_nifti

__all__ = [
    "ATTRIBUTION_METHODS",
    "BASELINES",
    "IG_SIGNS",
    "read_mask",
    "sampling_sigma",
    "antialias",
    "read_weight",
    "normalized_antialias",
    "make_baseline",
    "mean_scan",
    "gradient_map",
    "smoothgrad_map",
    "integrated_gradients_map",
    "occlusion_map",
]

#: attribution methods on the input volume, by name.
ATTRIBUTION_METHODS = ("gradient", "smoothgrad", "integrated_gradients", "occlusion")
#: named baselines of Integrated Gradients and occlusion (a NIfTI path or an array is accepted too).
BASELINES = ("zeros", "blur")
#: what :func:`integrated_gradients_map` keeps of the signed attribution.
IG_SIGNS = ("absolute", "positive")
#: Gaussian sigma of the ``"blur"`` baseline, in voxels.
BLUR_SIGMA_VOXELS = 4.0


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[:2] != (1, 1):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be one volume of shape (1, 1, X, Y, Z), not {shape}.")


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}.")
    return int(value)


def _to_map(attribution: torch.Tensor) -> np.ndarray:
    return attribution.detach().abs()[0, 0].to("cpu", torch.float32).numpy()


def read_mask(network: nn.Module, spatial_shape: Sequence[int]) -> np.ndarray:
    """Voxels the network reads: the union of its extracted slices over its planes.

    Args:
        network: a network of this package (``slice_indices(shape) -> {plane: range}``; DDP is unwrapped).
        spatial_shape: ``(X, Y, Z)``.

    Returns:
        ``(X, Y, Z)`` bool.
    """
    network = getattr(network, "module", network)
    shape = tuple(int(s) for s in spatial_shape)
    mask = np.zeros(shape, bool)
    for plane, indices in network.slice_indices(shape).items():
        np.moveaxis(mask, plane, 0)[list(indices)] = True
    return mask


def sampling_sigma(network: nn.Module, spatial_shape: Sequence[int]) -> tuple[float, float, float]:
    """Per-axis Gaussian sigma (voxels) of :func:`antialias`: half the in-plane sampling step where it exceeds 1.

    The step along axis ``a`` is ``spatial_shape[a] / image_size`` for every slice stack (``SliceStack``) of the
    network that has ``a`` as an in-plane axis; an axis that is only ever a slice axis, or that is upsampled
    (step <= 1), gets 0.

    Args:
        network: a network of this package (its ``SliceStack`` modules give planes and image sizes).
        spatial_shape: ``(X, Y, Z)``.

    Returns:
        ``(sx, sy, sz)`` in voxels.
    """
    from ..networks.slicing import SliceStack

    shape = tuple(int(s) for s in spatial_shape)
    sigma = [0.0, 0.0, 0.0]
    for stack in (m for m in getattr(network, "module", network).modules() if isinstance(m, SliceStack)):
        for axis in (a for a in range(3) if a != stack.plane):
            step = shape[axis] / stack.image_size
            if step > 1:
                sigma[axis] = max(sigma[axis], step / 2)
    return tuple(sigma)  # type: ignore[return-value]


def antialias(volume: np.ndarray, sigma: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing of a map with per-axis ``sigma`` (voxels; 0 leaves an axis alone), float32, >= 0."""
    if not any(s > 0 for s in sigma):
        return np.asarray(volume, np.float32)
    return np.maximum(ndimage.gaussian_filter(np.asarray(volume, np.float32), sigma=tuple(sigma)), 0)


def read_weight(network: nn.Module, spatial_shape: Sequence[int]) -> np.ndarray:
    """Total bilinear weight with which the network's slice stacks read each voxel.

    For each ``SliceStack`` it is the gradient of the sum of its output on a volume of ones, divided by the
    stack's channel and intensity-normalisation factor, so that every backbone pixel contributes a total weight
    of 1; the stacks of a tri-planar network add up.

    Args:
        network: a network of this package (DDP is unwrapped).
        spatial_shape: ``(X, Y, Z)``.

    Returns:
        ``(X, Y, Z)`` float64, backbone pixels per voxel (0 outside the slabs; about ``(S / side)^2`` inside a
        slab whose slices of side ``side`` are resized to ``S`` pixels).
    """
    from ..networks.slicing import SliceStack

    shape = tuple(int(s) for s in spatial_shape)
    weight = np.zeros(shape, np.float64)
    for stack in (m for m in getattr(network, "module", network).modules() if isinstance(m, SliceStack)):
        device = stack.mean.device
        with torch.enable_grad():
            ones = torch.ones((1, 1, *shape), device=device, requires_grad=True)
            out = stack(ones)
            (grad,) = torch.autograd.grad(out.sum(), ones)
        grad = grad[0, 0].to("cpu", torch.float64).numpy()
        pixels = out.shape[1] * out.shape[3] * out.shape[4]  # N slices x S x S
        weight += grad * (pixels / grad.sum())
    return weight


def normalized_antialias(volume: np.ndarray, weight: np.ndarray, sigma: Sequence[float]) -> np.ndarray:
    """Normalised convolution of a gradient map by the network's read weight: ``G * volume / G * weight``.

    Args:
        volume: ``(X, Y, Z)`` map, >= 0.
        weight: ``(X, Y, Z)`` read weight (:func:`read_weight`).
        sigma: per-axis Gaussian sigma in voxels (0 leaves an axis unsmoothed; all 0 returns ``volume``).

    Returns:
        ``(X, Y, Z)`` float32, >= 0; 0 where the smoothed weight is below 1e-6 of its maximum.
    """
    volume = np.asarray(volume, np.float64)
    if not any(s > 0 for s in sigma):
        return volume.astype(np.float32)
    num = ndimage.gaussian_filter(volume, sigma=tuple(sigma))
    den = ndimage.gaussian_filter(np.asarray(weight, np.float64), sigma=tuple(sigma))
    keep = den > 1e-6 * den.max(initial=0.0)
    out = np.zeros(volume.shape, np.float64)
    np.divide(num, den, out=out, where=keep)
    return np.maximum(out, 0).astype(np.float32)


def make_baseline(x: torch.Tensor, baseline: str | os.PathLike | np.ndarray | torch.Tensor = "zeros") -> torch.Tensor:
    """The reference volume of Integrated Gradients and occlusion, shaped and placed like ``x``.

    Args:
        x: ``(1, 1, X, Y, Z)`` input.
        baseline: ``"zeros"`` (an empty volume: the background of a skull-stripped, normalised scan), ``"blur"``
            (``x`` smoothed with a Gaussian of :data:`BLUR_SIGMA_VOXELS` voxels: removes local structure but keeps
            the coarse anatomy and intensity), an ``(X, Y, Z)`` array or tensor, or the path of a NIfTI volume on
            the input grid, already normalised as the inputs are (e.g. a mean control scan).

    Returns:
        ``(1, 1, X, Y, Z)`` tensor of ``x``'s dtype and device.

    Raises:
        ValueError: for an unknown name or a volume of another shape.
    """
    _check_input(x)
    if isinstance(baseline, str) and baseline == "zeros":
        return torch.zeros_like(x)
    if isinstance(baseline, str) and baseline == "blur":
        volume = ndimage.gaussian_filter(x[0, 0].detach().cpu().numpy(), BLUR_SIGMA_VOXELS, mode="constant")
        return torch.as_tensor(volume, dtype=x.dtype, device=x.device)[None, None]
    if isinstance(baseline, str | os.PathLike):
        if not os.path.isfile(baseline):
            raise ValueError(f"baseline must be one of {BASELINES} or the path of a NIfTI volume, not {baseline!r}.")
        baseline = np.asarray(nib.load(os.fspath(baseline)).dataobj, dtype=np.float32)
    volume = torch.as_tensor(baseline, dtype=x.dtype).to(x.device)
    volume = volume.reshape(volume.shape[-3:]) if volume.ndim > 3 and volume.shape[:-3].numel() == 1 else volume
    if tuple(volume.shape) != tuple(x.shape[2:]):
        raise ValueError(f"The baseline volume has shape {tuple(volume.shape)}, the input {tuple(x.shape[2:])}.")
    return volume[None, None]


def gradient_map(network: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """``|d logit_target / d x|`` (captum ``Saliency``): one forward and one backward pass.

    Args:
        network: classifier ``(B, 1, X, Y, Z) -> (B, C)`` in eval mode.
        x: ``(1, 1, X, Y, Z)``.
        target: class index.

    Returns:
        ``(X, Y, Z)`` float32, >= 0.
    """
    _check_input(x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return _to_map(Saliency(network).attribute(x, target=int(target), abs=True))


def smoothgrad_map(
    network: nn.Module, x: torch.Tensor, target: int, samples: int = 8, noise: float = 0.1, batch_size: int = 4
) -> np.ndarray:
    """SmoothGrad (captum ``NoiseTunnel`` over ``Saliency``): mean ``|gradient|`` over noisy copies of ``x``.

    The noise comes from torch's global generator: seed it (``torch.manual_seed``) for a reproducible map.

    Args:
        network: classifier in eval mode.
        x: ``(1, 1, X, Y, Z)``.
        target: class index.
        samples: number of noisy copies (cost: ``samples`` forward + backward passes).
        noise: noise standard deviation as a fraction of the input's intensity range (0.1-0.2 in the paper).
        batch_size: noisy copies per pass.

    Returns:
        ``(X, Y, Z)`` float32, >= 0.
    """
    _check_input(x)
    samples, batch_size = _positive_int(samples, "samples"), _positive_int(batch_size, "batch_size")
    if not noise >= 0:
        raise ValueError(f"noise must be a non-negative fraction of the intensity range, not {noise!r}.")
    sigma = float(noise) * float(x.max() - x.min())
    with torch.enable_grad():
        attribution = NoiseTunnel(Saliency(network)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=samples,
            nt_samples_batch_size=min(batch_size, samples),
            stdevs=sigma,
            target=int(target),
            abs=True,
        )
    return _to_map(attribution)


def mean_scan(
    images: Sequence[str | os.PathLike], load: Callable[[dict], dict], path: str | os.PathLike, key: str = "image"
) -> str:
    """The voxel-wise mean of scans as the network sees them, saved as NIfTI: a "mean control scan" baseline.

    Args:
        images: NIfTI paths, e.g. the control scans of the training split.
        load: the bundle's loading transform (``{key: path} -> {key: (1, X, Y, Z) MetaTensor}``), so that the mean
            is normalised as the network's inputs are.
        path: output NIfTI path (written atomically; parent folders are created).
        key: key of the image in ``load``'s dictionaries.

    Returns:
        ``path`` as a string; its volume is ``(X, Y, Z)`` float32 with the first scan's affine.

    Raises:
        ValueError: for no scans, or a scan whose grid differs from the first one's (the message names it).
    """
    if not images:
        raise ValueError("No scan to average: the list is empty.")
    total, affine, first = None, None, None
    for image in images:
        volume = load({key: str(image)})[key]
        array = np.asarray(volume, np.float64).reshape(np.shape(volume)[-3:])
        if total is None:
            total, affine, first = np.zeros_like(array), np.asarray(getattr(volume, "affine", np.eye(4))), image
        elif array.shape != total.shape:
            raise ValueError(f"{image}: grid {array.shape} differs from {total.shape} of {first}; resample the scans.")
        total += array
    write_nifti(path, nib.Nifti1Image((total / len(images)).astype(np.float32), affine))
    return os.fspath(path)


def integrated_gradients_map(
    network: nn.Module,
    x: torch.Tensor,
    target: int,
    steps: int = 8,
    baseline: str | os.PathLike | np.ndarray | torch.Tensor = "zeros",
    batch_size: int = 4,
    sign: str = "absolute",
) -> np.ndarray:
    """Integrated Gradients (captum): ``|(x - x') * mean gradient along the path from x' to x|``.

    Args:
        network: classifier in eval mode.
        x: ``(1, 1, X, Y, Z)``.
        target: class index.
        steps: Gauss-Legendre points on the path (cost: ``steps`` forward + backward passes).
        baseline: ``x'``, see :func:`make_baseline`.
        batch_size: path points per pass.
        sign: ``"absolute"`` (the magnitude) or ``"positive"`` (the positive part of the signed attribution: the
            evidence for ``target`` relative to the baseline).

    Returns:
        ``(X, Y, Z)`` float32, >= 0.
    """
    _check_input(x)
    steps, batch_size = _positive_int(steps, "steps"), _positive_int(batch_size, "batch_size")
    if sign not in IG_SIGNS:
        raise ValueError(f"sign must be one of {IG_SIGNS}, not {sign!r}.")
    reference = make_baseline(x, baseline)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        attribution = IntegratedGradients(network).attribute(
            x, baselines=reference, target=int(target), n_steps=steps, internal_batch_size=batch_size
        )
    return _to_map(attribution.clamp(min=0) if sign == "positive" else attribution)


class _BoxInput(nn.Module):
    """Network seen through a box: a crop ``(B, 1, a, b, c)`` is pasted into a fixed volume before the forward."""

    def __init__(self, network: nn.Module, volume: torch.Tensor, box: tuple[slice, slice, slice]) -> None:
        super().__init__()
        self.network, self.volume, self.box = network, volume, box

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        full = self.volume.expand(crop.shape[0], -1, -1, -1, -1).clone()
        full[(slice(None), slice(None), *self.box)] = crop
        return self.network(full)


def _box(support: np.ndarray, window: Sequence[int]) -> tuple[slice, slice, slice]:
    """Bounding box of ``support``, grown where needed so that every side holds at least one window."""
    box = []
    for axis, size in enumerate(support.shape):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(support.any(axis=other))
        lo, hi = (int(present[0]), int(present[-1]) + 1) if present.size else (0, size)
        short = max(0, min(window[axis], size) - (hi - lo))
        lo = max(0, lo - short)
        hi = min(size, max(hi, lo + min(window[axis], size)))
        box.append(slice(lo, hi))
    return tuple(box)  # type: ignore[return-value]


def occlusion_map(
    network: nn.Module,
    x: torch.Tensor,
    target: int,
    window: int | Sequence[int] = 4,
    stride: int | Sequence[int] | None = None,
    baseline: str | os.PathLike | np.ndarray | torch.Tensor = "zeros",
    batch_size: int = 8,
    support: np.ndarray | None = None,
) -> np.ndarray:
    """3D occlusion (captum ``Occlusion``): how much the logit changes when a window is replaced by the baseline.

    Only windows inside the bounding box of ``support`` are tried (outside it the network reads nothing or there
    is no brain), which saves most of the cost; voxels outside the box get 0.

    Args:
        network: classifier in eval mode.
        x: ``(1, 1, X, Y, Z)``.
        target: class index.
        window: window side in voxels (one int or ``(wx, wy, wz)``).
        stride: window step in voxels (default: ``window``, i.e. no overlap); at most ``window``.
        baseline: what an occluded window shows, see :func:`make_baseline`.
        batch_size: occluded volumes per forward pass.
        support: ``(X, Y, Z)`` bool, the voxels worth occluding (e.g. ``read_mask(...) & brain``); None for all.

    Returns:
        ``(X, Y, Z)`` float32, >= 0. Cost: one forward pass per window position, about
        ``prod(ceil((box - window) / stride) + 1)``.

    Raises:
        ValueError: for non-positive sizes or a stride larger than the window.
    """
    _check_input(x)
    shape = tuple(x.shape[2:])
    sizes = [window] * 3 if isinstance(window, int) else list(window)
    steps = sizes if stride is None else ([stride] * 3 if isinstance(stride, int) else list(stride))
    if len(sizes) != 3 or len(steps) != 3:
        raise ValueError(f"window and stride must be one int or three ints, not {window!r} and {stride!r}.")
    sizes = [min(_positive_int(w, "window"), s) for w, s in zip(sizes, shape, strict=True)]
    steps = [_positive_int(s, "stride") for s in steps]
    if any(s > w for s, w in zip(steps, sizes, strict=True)):
        raise ValueError(f"stride {steps} must not exceed the window {sizes} (voxels would be skipped).")
    batch_size = _positive_int(batch_size, "batch_size")
    keep = np.ones(shape, bool) if support is None else np.asarray(support, bool)
    if keep.shape != shape:
        raise ValueError(f"support has shape {keep.shape}, the input {shape}.")
    out = np.zeros(shape, np.float32)
    if not keep.any():
        return out
    box = _box(keep, sizes)
    reference = make_baseline(x, baseline)
    crop = x[(slice(None), slice(None), *box)].detach()
    boxed = _BoxInput(network, x.detach(), box)
    with torch.no_grad():
        attribution = Occlusion(boxed).attribute(
            crop,
            sliding_window_shapes=(1, *sizes),
            strides=(1, *steps),
            baselines=reference[(slice(None), slice(None), *box)],
            target=int(target),
            perturbations_per_eval=batch_size,
        )
    out[box] = _to_map(attribution)
    return out
