"""Benchmark: the MONAI Deploy application on a Colin27 DICOM study, from the DICOM files to the DICOM results.

The study is written with pydicom (``tests/dicom_fixture.py``) from Colin27 with skull (Debian ``mricron-data``, 1 mm,
moved by the rigid transform of ``predict_raw_head.py``): a 3D T1 series (one file per slice), a localiser and a T2.
The application is written from an exported bundle (``axial-monai deploy``) and run as a receiver runs it,
``python APP -i STUDY -o OUT`` in a fresh process with a fresh preprocessing cache. The baseline, in the same script
on the same study, is ``axial-monai predict STUDY --model BUNDLE --explain`` (the eager answer the application checks
the compiled one against); the ratio says what the application adds (its start-up, model.ts, the DICOM writers).

    python benchmarks/deploy_colin27.py --bundle bundles/demo_mri_classification
        [--head colin27|scanner] [--out benchmarks/results/deploy/<head>.json]

``--head scanner`` writes, instead of Colin27, a head as a scanner puts it: case 11 of
``preprocess_robustness.py`` (the pydeface mean head with its neck, 112 mm from the origin, PIR, voxels of
1.3 x 0.95 x 1.0 mm, uint8, a coronal acquisition; ``pip install --no-deps pydeface``), as its only series.

Writes the JSON record, the SR's content items (``<head>_sr.txt``) and the secondary capture as it reads back
(``<head>_secondary_capture.png``) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import command, machine, write_result  # noqa: E402
from dicom_fixture import write_series  # noqa: E402
from predict_raw_head import moved_head, timed  # noqa: E402

STUDIES = {
    "colin27": "Colin27 with skull, 1 mm, moved; T1 (181 files), localiser (3), T2 (181)",
    "scanner": "pydeface mean head, neck in, 112 mm from the origin, PIR, 1.3 x 0.95 x 1.0 mm, uint8; T1 (200 files)",
}


def _scanner_study(root: Path) -> Path:
    import numpy as np
    from preprocess_robustness import make_case, pydeface_head

    rng = np.random.default_rng(0)  # the draws of preprocess_robustness.py --seed 0, up to its case 11
    for index in range(12):
        case = make_case(nib.load(pydeface_head()), None, rng, index)
    image = case["image"]
    write_series(root / "study" / "t1", nib.Nifti1Image(np.asarray(image.dataobj, np.float32), image.affine))
    return root / "study"


def _study(root: Path, head_name: str) -> Path:
    if head_name == "scanner":
        return _scanner_study(root)
    head = nib.load(moved_head(root / "head.nii.gz"))
    study = root / "study"
    write_series(study / "t1", head, description="T1 MPRAGE sag")
    write_series(study / "loc", head, description="AAHScout", slices=[60, 90, 120], image_type=["LOCALIZER"])
    write_series(study / "t2", head, description="t2_tse_tra", echo_time=90.0, repetition_time=6000.0)
    return study


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and children's CPU seconds of ``cmd``, which answers the T1 series (exit status 0) or answers it and
    lists the refused localiser and T2 (``predict``: exit status 1)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def _sr_items(path: Path) -> list[str]:
    sr = pydicom.dcmread(path)
    lines = [f"SOP class: {sr.SOPClassUID.name}; series: {sr.SeriesDescription}"]
    for item in sr.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        value = item.TextValue if "TextValue" in item else item.MeasuredValueSequence[0].NumericValue
        lines.append(f"{name}: {value}")
    for series in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence:
        lines.append(f"evidence: series {series.SeriesInstanceUID}, {len(series.ReferencedSOPSequence)} instances")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="an exported bundle folder with models/model.ts")
    parser.add_argument("--head", choices=("colin27", "scanner"), default="colin27")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or f"benchmarks/results/deploy/{args.head}.json")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "AXIAL_MONAI_CACHE": str(root / "cache")}
        study = _study(root, args.head)
        app = root / "app"
        timed(["axial-monai", "deploy", str(Path(args.bundle).resolve()), str(app)], env)
        wall, cpu = _timed([sys.executable, str(app), "-i", str(study), "-o", str(root / "results")], env)
        env["AXIAL_MONAI_CACHE"] = str(root / "cache-predict")  # the baseline preprocesses too
        predict = ["axial-monai", "predict", str(study), "--model", str(app / "bundle"), "--explain"]
        base_wall, base_cpu = _timed([*predict, "--out", str(root / "predict")], env)
        result = json.loads((root / "results" / "result.json").read_text())
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / f"{args.head}_sr.txt").write_text("\n".join(_sr_items(root / "results" / "report.dcm")) + "\n")
        import matplotlib.pyplot as plt

        capture = pydicom.dcmread(root / "results" / "picture.dcm").pixel_array  # as a DICOM viewer reads it
        plt.imsave(out.parent / f"{args.head}_secondary_capture.png", capture)
        shown = {**result, "study": "study"}  # not the temporary folder's path
        (out.parent / f"{args.head}_result.json").write_text(json.dumps(shown, indent=2) + "\n")
    record = {
        "command": command(),
        "machine": machine(),
        "study": STUDIES[args.head],
        "app_wall_s": round(wall, 1),
        "app_cpu_s": round(cpu, 1),
        "predict_wall_s": round(base_wall, 1),
        "predict_cpu_s": round(base_cpu, 1),
        "app_over_predict": round(wall / base_wall, 2),
        "answered": result["answered"],
        "predicted": result["predicted"],
        "probabilities": result["probabilities"],
        "refused": result["refused"],
        "app_seconds_inside": result["seconds"],
    }
    write_result(record, out)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
