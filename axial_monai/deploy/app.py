"""The MONAI Deploy application: a DICOM study folder in, DICOM results (SR and secondary capture) and JSON out.

Three operators, in one Holoscan graph::

    StudyOperator ──image──> MonaiBundleInferenceOperator (models/model.ts) ──pred──> ResultOperator
          └───────────────────────────context──────────────────────────────────────────────┘

* ``StudyOperator`` (this package): the T1 series, preprocessed, QC-gated and answered by the eager network
  (:func:`~.study.prepare_study`); a refused study goes to ``ResultOperator`` alone.
* ``MonaiBundleInferenceOperator`` (the SDK's): the bundle's self-contained ``model.ts`` on that volume.
* ``ResultOperator`` (this package): the compiled model's probabilities, checked against the eager ones, written as
  JSON, a Structured Report and a secondary capture (:func:`~.study.finish_study`).

Guarded SDK pitfalls: the model is always ``<bundle>/models/model.ts``, given explicitly (the SDK would take a
``models/`` folder of the working directory); only the ``probabilities`` of the SDK's classification output are read
(its ``result`` labels are derived wrongly); the series is read by this package's ITK reader as float, never by the
SDK's series-to-volume step (which takes the voxel type of the first slice).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from holoscan.conditions import CountCondition
from monai.deploy.core import Application, ConditionType, Fragment, Image, IOType, Operator, OperatorSpec
from monai.deploy.operators.monai_bundle_inference_operator import (
    BundleConfigNames,
    IOMapping,
    MonaiBundleInferenceOperator,
)

from ..errors import InputError
from ..run.layout import BundleLayout
from .folder import check_compiled_configs
from .results import sdk_probabilities
from .study import PreparedStudy, finish_study, prepare_study

__all__ = ["AxialDeployApp", "ResultOperator", "StudyOperator", "sdk_image"]

logger = logging.getLogger(__name__)


def sdk_image(path: str | os.PathLike) -> Image:
    """The NIfTI volume at ``path`` as an SDK ``Image``: its voxels ``(X, Y, Z)`` as stored and the metadata MONAI's
    loader would give (affine, spacing, no channel), so the bundle's ``EnsureChannelFirstd`` and ``Orientationd`` run
    on it as on a loaded file."""
    volume = nib.load(path)
    affine = np.asarray(volume.affine, dtype=np.float64)
    meta = {
        "affine": affine,
        "original_affine": affine.copy(),
        "spacing": np.asarray(volume.header.get_zooms()[:3], dtype=np.float64),
        "spatial_shape": np.asarray(volume.shape[:3]),
        "original_channel_dim": "no_channel",
        "filename_or_obj": str(path),
        "space": "RAS",
    }
    return Image(np.asarray(volume.dataobj, dtype=np.float32), metadata=meta)


class StudyOperator(Operator):
    """Select, preprocess and answer (eager) the study once; emit the volume for ``model.ts`` and the context.

    Outputs: ``image`` (``Image``, only for an answered study) and ``context`` (:class:`~.study.PreparedStudy`).
    """

    def __init__(self, fragment: Fragment, *args: Any, study: Path, bundle: Path, workdir: Path, **kwargs: Any):
        self.study, self.bundle, self.workdir = Path(study), Path(bundle), Path(workdir)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("image").condition(ConditionType.NONE)  # nothing goes out for a refused study
        spec.output("context")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        prepared = prepare_study(self.study, self.bundle, self.workdir, echo=logger.info)
        if prepared.image is not None:
            op_output.emit(sdk_image(prepared.image), "image")
        op_output.emit(prepared, "context")


class ResultOperator(Operator):
    """Write the study's results: the compiled model's probabilities (checked against the eager ones), or the
    refusal. Inputs: ``context`` and, for an answered study, ``pred`` (the SDK's classification output)."""

    def __init__(self, fragment: Fragment, *args: Any, out: Path, **kwargs: Any):
        self.out = Path(out)
        self.written: dict[str, Path] = {}
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("context")
        spec.input("pred").condition(ConditionType.NONE)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        prepared: PreparedStudy = op_input.receive("context")
        compiled = None
        if prepared.image is not None:
            compiled = sdk_probabilities(op_input.receive("pred"), list(prepared.result.eager_probabilities))
        self.written = finish_study(prepared, compiled, self.out)
        logger.info(f"results written to {self.out}: {', '.join(str(p.name) for p in self.written.values())}")


class AxialDeployApp(Application):
    """The application of one exported bundle (its folder, with ``models/model.ts``).

    Args:
        bundle: the bundle folder.
        argv: the SDK's command line (``-i STUDY -o OUT``; ``-m`` is set to the bundle's ``model.ts``).
    """

    def __init__(self, bundle: str | os.PathLike, argv: Sequence[str] | None = None, **kwargs: Any) -> None:
        self.bundle = Path(bundle).resolve()
        self.model = self.bundle / BundleLayout.TORCHSCRIPT
        if not self.model.is_file():
            raise InputError(
                f"{self.bundle} has no {BundleLayout.TORCHSCRIPT}: export the run with axial-monai export (it writes "
                "the compiled model unless --torchscript false), then axial-monai deploy."
            )
        check_compiled_configs(self.model)  # the SDK evaluates its configs' expressions
        self.sdk_argv = [sys.argv[0], *(argv or []), "--model", str(self.model)]
        super().__init__(self.sdk_argv, **kwargs)

    def compose(self) -> None:
        app_context = Application.init_app_context(self.sdk_argv)
        if Path(app_context.model_path).resolve() != self.model:  # the SDK's default is ./models
            raise InputError(f"the model of this application is {self.model}, not {app_context.model_path}.")
        out = Path(app_context.output_path)
        study = StudyOperator(
            self,
            CountCondition(self, 1),
            study=Path(app_context.input_path),
            bundle=self.bundle,
            workdir=Path(app_context.workdir or out / ".work"),
            name="study",
        )
        inference = MonaiBundleInferenceOperator(
            self,
            app_context=app_context,
            input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", dict, IOType.IN_MEMORY)],
            bundle_path=self.model,
            bundle_config_names=BundleConfigNames(config_names=["inference"]),
            name="inference",
        )
        self.results = ResultOperator(self, out=out, name="results")
        self.add_flow(study, inference, {("image", "image")})
        self.add_flow(study, self.results, {("context", "context")})
        self.add_flow(inference, self.results, {("pred", "pred")})
