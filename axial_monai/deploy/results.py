"""What the deployed application writes for one DICOM study: JSON for scripts, a DICOM Structured Report and a
secondary-capture picture, both referencing the source series (highdicom).

The report is a Comprehensive SR whose root container holds the algorithm's name and version, the finding (the
predicted class, or why the study was refused), one probability per class and the preprocessing QC figures. Its
``CurrentRequestedProcedureEvidenceSequence`` lists every instance of the T1 series the answer is about. The
secondary capture is an RGB picture (the default explanation map over the scan, or the QC picture of a refusal) in a
new series of the same study.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_json

__all__ = [
    "MANUFACTURER",
    "StudyResult",
    "probabilities_gap",
    "read_source",
    "sdk_probabilities",
    "secondary_capture",
    "structured_report",
    "write_results",
]

#: the manufacturer written in the DICOM results.
MANUFACTURER = "axial-monai"
#: the coding scheme of the concepts that DICOM's own codes do not name.
_SCHEME = "99AXIALMONAI"
_SR_SERIES_NUMBER = 9101
_SC_SERIES_NUMBER = 9102


@dataclass
class StudyResult:
    """The answer for one study, or its refusal.

    Attributes:
        study: the study folder.
        model: ``{"name": ..., "version": ...}`` of the bundle.
        series_uid: the T1 series the answer is about (None if none was usable).
        series: its description.
        predicted: the predicted class, or None for a refusal.
        probabilities: ``{class: probability}`` of the compiled model (``model.ts``).
        eager_probabilities: the same of the eager network (``model.pt``), which they must equal.
        quality: the preprocessing QC figures.
        refused: ``{series or study: reason}`` of everything not answered.
        picture: the PNG of the secondary capture (the explanation overview, or the QC picture of a refusal).
        seconds: from the study folder to the results.
    """

    study: str
    model: dict[str, str]
    series_uid: str | None = None
    series: str | None = None
    predicted: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    eager_probabilities: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    picture: str | None = None
    seconds: float | None = None

    @property
    def answered(self) -> bool:
        return self.predicted is not None


#: patient and study attributes the results copy from the source; DICOM lets them be empty (type 2), and an
#: anonymised series often leaves them out.
_TYPE_2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def read_source(files: Sequence[str | os.PathLike]) -> list[Any]:
    """The headers (no pixels) of a series' files, as the evidence of the results; missing type-2 patient and
    study attributes are added empty."""
    import pydicom

    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    for header in headers:
        for name in _TYPE_2:
            if name not in header:
                setattr(header, name, "")
    return headers


def _concept(value: str, meaning: str, scheme: str = "DCM") -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _content(result: StudyResult) -> Any:
    from highdicom.sr import ContainerContentItem, NumContentItem, RelationshipTypeValues, TextContentItem

    contains = RelationshipTypeValues.CONTAINS
    no_units = _concept("1", "no units", "UCUM")
    root = ContainerContentItem(name=_concept("126000", "Imaging Measurement Report"))
    items = [
        TextContentItem(_concept("111001", "Algorithm Name"), result.model["name"], relationship_type=contains),
        TextContentItem(_concept("111003", "Algorithm Version"), result.model["version"], relationship_type=contains),
    ]
    finding = result.predicted if result.answered else "refused: " + "; ".join(result.refused.values())
    items.append(TextContentItem(_concept("121071", "Finding"), finding[:1024], relationship_type=contains))
    for name, value in result.probabilities.items():
        concept = _concept(f"P-{name}"[:16], f"Probability of {name}", _SCHEME)
        items.append(NumContentItem(concept, float(value), no_units, relationship_type=contains))
    for name, value in result.quality.items():
        concept = _concept(f"QC-{name}"[:16], f"Preprocessing QC: {name}", _SCHEME)
        items.append(NumContentItem(concept, float(value), no_units, relationship_type=contains))
    root.ContentSequence = items
    return root


def structured_report(source: Sequence[Any], result: StudyResult) -> Any:
    """A Comprehensive SR of ``result`` in a new series of the source study, with ``source`` (the headers of the
    T1 series) as its evidence."""
    from highdicom.sr import ComprehensiveSR
    from pydicom.uid import generate_uid

    return ComprehensiveSR(
        evidence=list(source),
        content=_content(result),
        series_instance_uid=generate_uid(),
        series_number=_SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=f"{result.model['name']} {result.model['version']} result",
    )


def secondary_capture(source: Sequence[Any], picture: str | os.PathLike, description: str) -> Any:
    """The PNG ``picture`` as an RGB secondary-capture image in a new series of the source study."""
    import matplotlib.image
    from highdicom.sc import SCImage
    from pydicom.uid import generate_uid

    rgb = matplotlib.image.imread(str(picture))[..., :3]
    pixels = np.ascontiguousarray(np.round(rgb * 255 if rgb.dtype.kind == "f" else rgb).astype(np.uint8))
    return SCImage.from_ref_dataset(
        ref_dataset=source[0],
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=generate_uid(),
        series_number=_SC_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"),
        series_description=description[:64],
    )


def write_results(out: str | os.PathLike, result: StudyResult, source: Sequence[Any] = ()) -> dict[str, Path]:
    """Write ``result.json`` and, with the source series' headers, ``report.dcm`` (SR) and ``picture.dcm``
    (secondary capture, when there is a picture) into ``out``; returns ``{kind: path}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "result.json"}
    if result.picture and Path(result.picture).is_file():  # beside the results, named in result.json
        written["png"] = out / "picture.png"
        shutil.copyfile(result.picture, written["png"])
        result.picture = written["png"].name
    write_json(written["json"], {**asdict(result), "answered": result.answered})
    if source:
        written["report"] = out / "report.dcm"
        structured_report(source, result).save_as(written["report"])
        if "png" in written:
            kind = "explanation map" if result.answered else "preprocessing QC"
            written["picture"] = out / "picture.dcm"
            secondary_capture(source, written["png"], f"{result.model['name']} {kind}").save_as(written["picture"])
    return written


def sdk_probabilities(pred: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, float]:
    """``{class: probability}`` from the classification output of MONAI Deploy's ``MonaiBundleInferenceOperator``.

    Only its ``probabilities`` are read: the SDK derives its ``result`` labels from the probabilities' values cast to
    int (every label is the first class). Empty if the number of probabilities is not the number of classes.
    """
    probabilities = np.asarray(pred["probabilities"], dtype=np.float64).reshape(-1)
    if len(probabilities) != len(class_names):
        return {}
    return {name: float(p) for name, p in zip(class_names, probabilities)}


def probabilities_gap(first: Mapping[str, float], second: Mapping[str, float]) -> float:
    """The largest difference between two ``{class: probability}`` of the same classes (inf if they differ)."""
    if set(first) != set(second):
        return float("inf")
    return max(abs(float(first[c]) - float(second[c])) for c in first)
