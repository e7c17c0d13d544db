"""Run settings: what a trained network is and what it accepts, saved inside its checkpoint.

Training saves one checkpoint ``models/model.pt`` that holds two entries (MONAI's ``CheckpointSaver`` with
``save_dict={"model": network, "run": run_settings}``, written atomically by ignite's ``DiskSaver``)::

    {"model": <state dict of the network>, "run": <RunSettings.state_dict(): plain data and two small tensors>}

Both load with ``torch.load(path, weights_only=True)``, so a ``model.pt`` copied on its own still says what it is.
The settings are (:meth:`RunSettings.state_dict`):

* ``network``: the class (``axial_monai.networks.axialnet.AxialNet``) and every constructor argument, as the
  config resolved them (``backbone``, ``plane``, ``num_slices``, ``image_size``, slice ``normalize``, ...);
* ``class_names`` (label order), ``positive_class``, ``task`` and the volume ``intensity`` mode;
* ``grid``: the RAS shape, voxel size, orientation and affine of the training images, read from their NIfTI
  headers (:func:`axial_monai.input_check.read_grid`), and the ``template`` they were registered to, resampled to
  that grid (uint8 intensities and a bit-packed brain mask: 1.3 MB for the 2 mm demo grid, 10 MB at 1 mm): the
  brain-extracted check of new scans and the registration target of ``axial-monai predict``;
* ``controls``: the mean control scan: the voxel-wise mean of up to :data:`MAX_CONTROLS` training scans of the
  classes other than ``positive_class``, as the network trains on them (read from the training dataset's volume cache
  before training: :meth:`RunSettings.average_controls`), on the input grid (float16: 3.6 MB for the 2 mm demo grid,
  17 MB at 1 mm). It is the default baseline of Integrated Gradients
  (:class:`axial_monai.explain.ExplainSettings`), so that a shared model explains new scans without its training
  data. Checkpoints made before axial-monai 0.2.5 lack it (:func:`axial_monai.run.migrate.attach_control_mean` adds it);
* ``data``: the training ``dataset_dir`` and ``datalist`` (the defaults of evaluation and inference);
* ``versions`` of the packages that made the run.

Why inside the checkpoint and not beside it: :mod:`.checkpoint`.

Evaluation, inference and explanation build the network from the settings (:meth:`RunSettings.build_network`);
a setting given explicitly that contradicts the run is a :class:`~axial_monai.errors.SettingsError` naming both
values (:meth:`RunSettings.check_given`); a null setting means "the run's".
"""

from __future__ import annotations

import datetime
import functools
import importlib
import importlib.metadata
import inspect
import logging
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import list_data_collate
from torch import nn

from ..data.datalist import load_split
from ..errors import InputError, SettingsError
from ..input_check import Grid, InputCheck
from ..layout import RunLayout
from .checkpoint import RUN_KEY, check_weights, checkpoint_path, load_weights, pack_mask, read_checkpoint, unpack_mask
from .controls import MAX_CONTROLS, mean_control
from .json_settings import FILES, read_json_settings, write_json_settings
from .network import checked_class_names, network_class, network_recipe, same_setting, slice_problem

__all__ = ["FORMAT", "RunSettings", "load_run_settings"]

logger = logging.getLogger(__name__)

#: version of the layout of the saved settings.
FORMAT = 1
#: packages whose versions a run records.
_PACKAGES = ("axial-monai", "monai", "torch", "torchvision", "pytorch-ignite", "numpy", "nibabel")
#: settings compared with the run by value that are not network arguments.
_RUN_LEVEL = ("class_names", "positive_class", "intensity")
#: network arguments that only matter for training: the checkpoint holds every weight.
_TRAINING_ONLY = ("pretrained", "freeze")


def package_versions() -> dict[str, str]:
    """The versions of Python and of the packages a run records."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class RunSettings:
    """The settings of a trained run (see the module docstring for what each means).

    Build one with :func:`axial_monai.run.training.training_settings` (the training config does),
    :meth:`for_fine_tuning` or :meth:`load` (from a checkpoint). It has
    ``state_dict``/``load_state_dict``, so checkpoint handlers save and load it next to the network.
    """

    network: str = ""
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    positive_class: int = 1
    intensity: str = "percentile"
    grid: Grid | None = None
    template: np.ndarray | None = None
    brain_mask: np.ndarray | None = None
    template_source: str = ""
    preprocessing: str | None = None
    control_mean: np.ndarray | None = None
    control_count: int = 0
    dataset_dir: str | None = None
    datalist: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    source: str | None = None
    recipe: Any = field(default=None, repr=False)

    # --- building -------------------------------------------------------------------------------------------

    @classmethod
    def for_fine_tuning(
        cls,
        ckpt_path: str | os.PathLike,
        network: functools.partial,
        class_names: Sequence[str],
        positive_class: int = 1,
        dataset_dir: str | None = None,
        datalist: str | None = None,
    ) -> RunSettings:
        """The settings of a run that trains further from a trained model (an exported bundle's ``models/model.pt``)
        on other data.

        The new run keeps the model's input grid, template, brain mask and intensity mode (the training items are
        checked against that grid: ``input_check``), and takes the network recipe and classes given (a new task may
        have other classes: the head is trained anew). No image is read here, so the config resolves before any data
        is given.

        Args:
            ckpt_path: the trained model's checkpoint (or its run or bundle folder).
            network: the network recipe, a partial of its class with all keyword arguments.
            class_names, positive_class: the classes of the new run, in label order.
            dataset_dir, datalist: the new training data (recorded as the run's data).

        Raises:
            SettingsError: for a network that is not a recipe or class names that do not fit ``positive_class``.
            InputError: if the model's grid cannot give the network's slices, or the checkpoint has no run settings.
        """
        model = cls.load(ckpt_path)
        target, kwargs = network_recipe(network)
        names = checked_class_names(class_names, positive_class, kwargs)
        problem = slice_problem(model.grid, kwargs)
        if problem:
            raise InputError(f"The inputs of {model.source} {problem}.")
        return cls(
            network=target,
            network_kwargs=kwargs,
            class_names=names,
            positive_class=int(positive_class),
            intensity=model.intensity,
            grid=model.grid,
            template=model.template,
            brain_mask=model.brain_mask,
            template_source=model.template_source,
            preprocessing=model.preprocessing,
            dataset_dir=None if dataset_dir is None else os.path.abspath(str(dataset_dir)),
            datalist=None if datalist is None else os.path.abspath(str(datalist)),
            versions=package_versions(),
            created=datetime.datetime.now().isoformat(timespec="seconds"),
            recipe=network,
        )

    def average_controls(
        self, dataset: Sequence[Mapping], restore: Callable[[Mapping], Any] | None = None, limit: int = MAX_CONTROLS
    ) -> RunSettings:
        """Set :attr:`control_mean` from the training dataset: the mean of up to ``limit`` of its control scans.

        The training config calls this before training (``run``), with the training dataset and its batch restore
        (``PrepareVolumeBatch.restore``): the volumes come from the dataset's cache
        (``axial_monai.data.VolumeCacheDataset``), so no scan is decoded again, and they are the very volumes the
        network trains on (in the cache's dtype). Without a usable control the run stores no mean (with a warning):
        its default explanation is then refused, with what to do.

        Args:
            dataset: the training dataset (items with ``image`` and ``label``; ``.data`` holds the datalist items).
            restore: batch -> ``(B, 1, X, Y, Z)`` volumes, for a dataset whose items are compact cache entries; None
                for items that are the full volumes.
            limit: the most controls averaged (:data:`MAX_CONTROLS`).

        Returns:
            these settings.
        """
        items = getattr(dataset, "data", dataset)
        mean, count = mean_control(
            [item.get("label") for item in items],
            lambda i: dataset[i]["image"] if restore is None else restore(list_data_collate([dataset[i]])),
            [str(item.get("image")) for item in items],
            self.positive_class,
            self.grid,
            limit,
        )
        if mean is None:
            logger.warning(
                f"No usable control scan (label other than {self.positive_class}) in the training split: the run "
                "stores no mean control scan, the default baseline of Integrated Gradients; explain it with another."
            )
        self.control_mean = None if mean is None else mean.astype(np.float16)
        self.control_count = count
        return self

    def build_network(self) -> nn.Module:
        """The network, freshly initialised: from the recipe while training, else from the saved class and
        arguments with ``pretrained="none"`` (the checkpoint holds every weight; nothing is downloaded)."""
        if self.recipe is not None:
            return self.recipe()
        return self.saved_network()

    def saved_network(self) -> nn.Module:
        """The network from the saved class and arguments, with ``pretrained="none"``; a network of this package is
        locked to the run's input grid (``spatial_shape``: it refuses volumes of another shape, compiled or not)."""
        cls = network_class(self.network)
        kwargs = {k: ("none" if k == "pretrained" else v) for k, v in self.network_kwargs.items()}
        if self.grid is not None and "spatial_shape" in inspect.signature(cls).parameters:
            kwargs["spatial_shape"] = list(self.grid.shape)
        return cls(**kwargs)

    # --- saving and loading ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data (and two uint8 tensors) that ``torch.load(..., weights_only=True)`` reads back."""
        if self.grid is None:
            raise SettingsError(
                "These run settings have no grid: build them with axial_monai.run.training.training_settings."
            )
        state = {
            "format": FORMAT,
            "network": {"class": self.network, "kwargs": dict(self.network_kwargs)},
            "class_names": list(self.class_names),
            "positive_class": self.positive_class,
            "task": self.task,
            "intensity": self.intensity,
            "grid": self.grid.to_dict(),
            "template": {
                "source": self.template_source,
                "image": torch.as_tensor(self.template),
                "mask": pack_mask(self.brain_mask),
            },
            "data": {"dataset_dir": self.dataset_dir, "datalist": self.datalist},
            "preprocessing": {"profile": self.preprocessing},
            "versions": dict(self.versions),
            "created": self.created,
        }
        if self.control_mean is not None:
            mean = torch.as_tensor(self.control_mean, dtype=torch.float16)
            state["controls"] = {"mean": mean, "count": self.control_count}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Set these settings from :meth:`state_dict` output."""
        _check_format(state, "These run settings")
        grid = Grid.from_dict(state["grid"])
        self.network = str(state["network"]["class"])
        self.network_kwargs = dict(state["network"]["kwargs"])
        self.class_names = [str(c) for c in state["class_names"]]
        self.positive_class = int(state["positive_class"])
        self.intensity = str(state["intensity"])
        self.grid = grid
        self.template = np.asarray(state["template"]["image"]).reshape(grid.shape)
        self.brain_mask = unpack_mask(state["template"]["mask"], grid.shape)
        self.template_source = str(state["template"].get("source", ""))
        self.preprocessing = (state.get("preprocessing") or {}).get("profile")  # absent before 0.3.0
        controls = state.get("controls")  # absent before 0.2.5
        self.control_mean = None if not controls else np.asarray(controls["mean"]).reshape(grid.shape)
        self.control_count = int(controls["count"]) if controls else 0
        self.dataset_dir = state["data"].get("dataset_dir")
        self.datalist = state["data"].get("datalist")
        self.versions = dict(state.get("versions") or {})
        self.created = str(state.get("created", ""))
        self.recipe = None

    def write_json(self, folder: str | os.PathLike) -> Path:
        """Write the settings as an exported bundle carries them (:mod:`.json_settings`): ``run_settings.json`` (no
        path of this machine: the template's file name only, no data folders) and the template, brain mask and mean
        control scan (if any) as NIfTI files, into ``folder``; returns the JSON's path."""
        state = {k: v for k, v in self.state_dict().items() if k != "data"}
        state["template"] = {
            "source": Path(self.template_source).name,
            "image": FILES["template"],
            "mask": FILES["mask"],
        }
        volumes = {"template": self.template_image(), "mask": self.mask_image()}
        if self.control_mean is not None:
            state["controls"] = {"mean": FILES["controls"], "count": self.control_count}
            volumes["controls"] = self.control_image()
        return write_json_settings(state, volumes, Path(folder))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> RunSettings:
        """The settings of an exported bundle: its ``run_settings.json`` and the volumes beside it, checked against
        :data:`~axial_monai.run.json_settings.SCHEMA` first (:func:`~axial_monai.run.json_settings.read_json_settings`).

        Raises:
            InputError: if the JSON or a volume is not valid (one line naming the file).
        """
        state = read_json_settings(path)
        _check_format(state, path)
        network_class(state["network"]["class"])  # refused now, not when the network is first built
        controls = state.get("controls")
        return cls(
            network=state["network"]["class"],
            network_kwargs=dict(state["network"]["kwargs"]),
            class_names=list(state["class_names"]),
            positive_class=int(state["positive_class"]),
            intensity=str(state["intensity"]),
            grid=Grid.from_dict(state["grid"]),
            template=state["template"]["image"],
            brain_mask=state["template"]["mask"],
            template_source=str(state["template"].get("source", "")),
            preprocessing=(state.get("preprocessing") or {}).get("profile"),
            control_mean=None if controls is None else controls["mean"],
            control_count=0 if controls is None else int(controls["count"]),
            versions=dict(state.get("versions") or {}),
            created=str(state.get("created", "")),
        )

    @classmethod
    def load(cls, ckpt_path: str | os.PathLike) -> RunSettings:
        """The settings of a checkpoint (``ckpt_path``: ``models/model.pt``, or the run or bundle folder): saved inside
        it by training, or in ``run_settings.json`` beside it (an exported bundle, :meth:`from_json`).

        Raises:
            FileNotFoundError: if there is no checkpoint.
            InputError: if it cannot be read or has no run settings (with what to do).
        """
        path = checkpoint_path(ckpt_path)
        checkpoint = read_checkpoint(path)
        beside = path.parent / "run_settings.json"
        if not isinstance(checkpoint.get(RUN_KEY), Mapping) and beside.is_file():
            settings = cls.from_json(beside)
            settings.source = str(path)
            return settings
        if not isinstance(checkpoint.get(RUN_KEY), Mapping):
            raise InputError(
                f"{path} holds network weights only, without the run settings that training now saves with them "
                "(network, slices, image size, classes, input grid). Retrain it with this version, or attach the "
                "settings it was trained with: axial_monai.run.migrate.attach_run_settings"
                f"('{path}', config_files=[the training configs], <the training overrides>)."
            )
        settings = cls()
        try:
            settings.load_state_dict(checkpoint[RUN_KEY])
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            raise InputError(f"The run settings in {path} are damaged ({type(err).__name__}: {err}).") from None
        settings.source = str(path)
        return settings

    # --- using ----------------------------------------------------------------------------------------------

    @property
    def task(self) -> str:
        """E.g. ``"AD vs CN"``: the positive class against the others."""
        others = [c for i, c in enumerate(self.class_names) if i != self.positive_class]
        return f"{self.class_names[self.positive_class]} vs {' / '.join(others)}"

    @property
    def run_dir(self) -> str | None:
        """The run folder of a loaded checkpoint (``<run>/models/model.pt`` -> ``<run>``), or its folder."""
        if self.source is None:
            return None
        folder = Path(self.source).resolve().parent
        return str(folder.parent if folder.name == RunLayout.MODELS else folder)

    def check_given(self, given: Mapping[str, Any] | None) -> RunSettings:
        """Refuse settings given explicitly that contradict the run; ``None`` values mean "the run's".

        Args:
            given: setting name -> value, e.g. ``{"num_slices": 24, "plane": None}``. Names are network arguments
                (``backbone``, ``plane``, ``num_slices``, ``image_size``, ``dropout``, ...) or ``class_names``,
                ``positive_class``, ``intensity``.

        Returns:
            these settings (for chaining in configs).

        Raises:
            SettingsError: one line naming the setting, the given value and the run's value.
        """
        for name, value in (given or {}).items():
            if value is None:
                continue
            if name in _RUN_LEVEL:
                expected = getattr(self, name)
            elif name in self.network_kwargs:
                expected = self.network_kwargs[name]
            else:
                cls = self.network.rpartition(".")[2]
                raise SettingsError(
                    f"{name}={value!r} was given, but the run's network {cls} has no setting {name!r} "
                    f"(its settings: {sorted(self.network_kwargs)}); leave {name} unset (null)."
                )
            if name in _TRAINING_ONLY:
                continue  # no effect on a trained network: every weight comes from the checkpoint
            if not same_setting(name, value, expected):
                raise SettingsError(
                    f"{name}={value!r} contradicts the run {self.source or ''}: it was trained with "
                    f"{name}={expected!r}. Leave {name} unset (null) to use the run's value, or use a run trained "
                    "with the value you want."
                )
        return self

    def input_check(self, brain_extracted: bool = True, model: str | None = None, **kwargs: Any) -> InputCheck:
        """The :class:`~axial_monai.input_check.InputCheck` of this run's inputs.

        Args:
            brain_extracted: also check "brain-extracted" against the template brain mask.
            model: how the run is named in the suggested command (default: the run folder).
            kwargs: ``max_outside``, ``dilation_mm`` of :class:`InputCheck`.
        """
        mask = self.brain_mask if brain_extracted else None
        return InputCheck(self.grid, mask, model=model or self.run_dir, **kwargs)

    def template_image(self) -> nib.Nifti1Image:
        """The template on the run's grid (float32, 0 to about 1)."""
        return nib.Nifti1Image(np.asarray(self.template, np.float32) / 255.0, np.asarray(self.grid.affine))

    def template_input(self) -> np.ndarray:
        """The template's brain as the network takes its inputs: masked by the brain mask and normalised with the
        run's ``intensity`` mode, ``(X, Y, Z)`` float32. The explanations start from it when the model carries no
        mean control scan (an exported bundle, by default): a typical brain that is no subject's."""
        from ..transforms.intensity import RobustNormalizeIntensity

        brain = np.asarray(self.template, np.float32) / 255.0 * np.asarray(self.brain_mask, np.float32)
        normalized = RobustNormalizeIntensity(mode=self.intensity)(torch.from_numpy(brain[None]))
        return np.asarray(normalized, np.float32)[0]

    def control_image(self) -> nib.Nifti1Image | None:
        """The mean control scan on the run's grid (float32, normalised as the inputs), or None if the run has none."""
        if self.control_mean is None:
            return None
        return nib.Nifti1Image(np.asarray(self.control_mean, np.float32), np.asarray(self.grid.affine))

    def mask_image(self) -> nib.Nifti1Image:
        """The template brain mask on the run's grid (uint8)."""
        return nib.Nifti1Image(np.asarray(self.brain_mask, np.uint8), np.asarray(self.grid.affine))

    def split_items(self, split: str = "test") -> list[dict]:
        """The items of one split of the run's datalist (absolute paths): the default scans of inference; none (with
        a warning) when the run names no datalist or it is not here (an exported bundle: give the scans)."""
        if not self.datalist or not os.path.isfile(self.datalist):
            where = "names no datalist" if not self.datalist else f"datalist {self.datalist} does not exist here"
            logger.warning(f"No scans given, and the run {where}: pass the scans to run on (--input).")
            return []
        return load_split(str(self.dataset_dir), split, self.datalist)

    def datalist_for(self, dataset_dir: str | None) -> str | None:
        """The datalist to evaluate on: the run's for its own ``dataset_dir``, else ``<dataset_dir>/datalist.json``."""
        if dataset_dir is None or (
            self.dataset_dir is not None and os.path.abspath(dataset_dir) == os.path.abspath(self.dataset_dir)
        ):
            return self.datalist  # None for a run that names no data (an exported bundle): give dataset_dir
        return os.path.join(dataset_dir, RunLayout.DATALIST)

    def summary(self) -> dict[str, Any]:
        """The settings as JSON-ready plain data (no template arrays): for logs, metadata and reports."""
        state = self.state_dict()
        state["template"] = {"source": self.template_source}
        state["controls"] = {"count": self.control_count}
        return state


def _check_format(state: Mapping[str, Any], what: Any) -> None:
    """Refuse settings written by a newer axial-monai, naming the version they need."""
    if int(state.get("format", 0)) > FORMAT:
        made_by = (state.get("versions") or {}).get("axial-monai")
        needed = f"axial-monai {made_by} or later" if made_by else "a newer axial-monai"
        raise InputError(
            f"{what} have format {state['format']}; this axial-monai reads format {FORMAT} and older: install "
            f"{needed} (pip install -U axial-monai)."
        )


def load_run_settings(ckpt_path: str | os.PathLike, given: Mapping[str, Any] | None = None) -> RunSettings:
    """The run settings of a checkpoint, after checking the explicitly ``given`` settings against them and the
    checkpoint's weights against the network they describe.

    The configs call this (``run_settings`` of ``inference.json`` and ``evaluate.json``) and build the network with
    :meth:`RunSettings.build_network`.

    Raises:
        SettingsError: a given setting contradicts the run (one line, both values).
        InputError: no settings in the checkpoint, or weights that do not fit (one line naming the backbone).
    """
    settings = RunSettings.load(ckpt_path).check_given(given)
    check_weights(settings, load_weights(settings.source))
    return settings
