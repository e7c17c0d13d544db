"""The MONAI Deploy application of an exported bundle: DICOM study in, DICOM results and JSON out.

The application is written by ``axial-monai deploy`` and run as a receiver runs it, ``python APP -i STUDY -o OUT``
in a subprocess, through MONAI Deploy App SDK (Holoscan) on CPU. The studies are real DICOM files written with
pydicom (``tests/dicom_fixture.py``): a demo scan already on the model's grid, and the raw Colin27 head of
``test_dicom.py`` (4 mm, moved, oblique) next to a localiser, a T2 and a multi-echo T1.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from dicom_fixture import write_series
from test_dicom import oblique, study  # noqa: F401 (module fixtures: the raw Colin27 study)

from axial_monai import cli
from axial_monai.data.dicom import find_series, series_to_nifti
from axial_monai.deploy import PreparedStudy, StudyResult, finish_study
from axial_monai.deploy.results import sdk_probabilities
from axial_monai.errors import InputError
from axial_monai.export import export_bundle
from axial_monai.predict import predict_scans

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


class _Decoy(torch.nn.Module):
    """A model that always answers class 0 with certainty: what the SDK would run from ./models."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[20.0, -20.0]]).expand(x.shape[0], 2)


@pytest.fixture(scope="module")
def app(trained_demo, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deploy")
    bundle = export_bundle(trained_demo, root / "demo_mri_classification").folder
    assert cli.main(["deploy", str(bundle), str(root / "app")]) == 0
    return root / "app"


def _run(app: Path, folder: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(app), "-i", str(folder), "-o", str(out)], cwd=cwd, capture_output=True, text=True
    )


def _report(path: Path) -> dict:
    """The SR read back: its evidence series and its content items by concept name."""
    sr = pydicom.dcmread(path)
    items = {}
    for item in sr.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        items[name] = item.TextValue if "TextValue" in item else float(item.MeasuredValueSequence[0].NumericValue)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    return {"sr": sr, "items": items, "series": [s.SeriesInstanceUID for s in evidence]}


def test_an_on_grid_series_gets_the_probabilities_of_predict(app, trained_demo, tiny_cohort, tmp_path):
    """A series already on the model's grid: model.ts answers as ``axial-monai predict`` on the same study (1e-5),
    even with a ``models/`` folder in the working directory (the SDK's default model path), and the DICOM results
    are right."""
    item = json.loads((Path(tiny_cohort) / "datalist.json").read_text())["test"][0]
    nifti = Path(tiny_cohort) / item["image"]
    dicom = tmp_path / "study"
    uid = write_series(dicom / "t1", nib.load(nifti))
    cwd = tmp_path / "cwd"
    (cwd / "models").mkdir(parents=True)
    torch.jit.script(_Decoy()).save(str(cwd / "models" / "model.ts"))  # what the SDK would take by default

    done = _run(app, dicom, tmp_path / "out", cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    (expected,) = predict_scans([dicom], app / "bundle", tmp_path / "predict", echo=lambda *_: None)
    assert result["answered"] and result["series_uid"] == uid and not result["refused"]
    assert set(result["probabilities"]) == set(expected.probabilities)
    for name, probability in expected.probabilities.items():
        assert abs(result["probabilities"][name] - probability) <= 1e-5
    assert result["predicted"] == expected.predicted

    report = _report(tmp_path / "out" / "report.dcm")
    source = pydicom.dcmread(next((dicom / "t1").iterdir()))
    assert report["sr"].SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert report["sr"].StudyInstanceUID == source.StudyInstanceUID and report["series"] == [uid]
    assert report["items"]["Finding"] == expected.predicted
    assert report["items"]["Algorithm Name"] == "demo mri classification"
    assert report["items"]["Algorithm Version"] == "0.1.0"
    for name, probability in result["probabilities"].items():
        assert abs(report["items"][f"Probability of {name}"] - probability) < 1e-6
    picture = pydicom.dcmread(tmp_path / "out" / "picture.dcm")
    assert picture.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    assert picture.StudyInstanceUID == source.StudyInstanceUID and picture.SeriesInstanceUID != uid
    assert picture.pixel_array.ndim == 3 and picture.pixel_array.shape[2] == 3 and picture.pixel_array.std() > 0


def test_a_raw_study_gets_one_answer_and_named_refusals(app, study, oblique, tmp_path):  # noqa: F811
    """The raw Colin27 series is preprocessed (registration, brain extraction, QC gate) and answered as predict
    answers its NIfTI (0.01); the localiser, the T2 and the multi-echo T1 are refused by name."""
    done = _run(app, study, tmp_path / "out", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    nifti = tmp_path / "oblique_T1w.nii.gz"
    nib.save(oblique, nifti)
    (expected,) = predict_scans([nifti], app / "bundle", tmp_path / "predict", echo=lambda *_: None)
    assert result["answered"] and result["series"] == "T1 MPRAGE sag"
    for name, probability in expected.probabilities.items():
        assert abs(result["probabilities"][name] - probability) <= 0.01
    assert result["quality"]["similarity_cc"] > 0.3  # the QC figures of the preprocessing are reported
    refused = result["refused"]
    assert len(refused) == 3
    for description in ("AAHScout", "t2_tse_tra", "T1 ME-MPRAGE"):
        assert any(description in name for name in refused), refused
    report = _report(tmp_path / "out" / "report.dcm")
    assert report["items"]["Preprocessing QC: similarity_cc"] == pytest.approx(result["quality"]["similarity_cc"])
    assert report["series"] == [result["series_uid"]]


def test_a_study_without_a_t1_is_refused_with_its_reasons(app, oblique, tmp_path):  # noqa: F811
    dicom = tmp_path / "study"
    uid = write_series(dicom / "t2", oblique, description="t2_tse_tra", echo_time=90.0, repetition_time=6000.0)
    done = _run(app, dicom, tmp_path / "out", tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert not result["answered"] and result["probabilities"] == {}
    (reason,) = result["refused"].values()
    assert "t2_tse_tra" in reason and "is not a T1" in reason
    report = _report(tmp_path / "out" / "report.dcm")  # the refusal is a DICOM result too, about that series
    assert report["items"]["Finding"].startswith("refused: ") and "is not a T1" in report["items"]["Finding"]
    assert report["series"] == [uid]


def test_a_failed_registration_is_a_refusal_with_its_qc_picture(app, oblique, tmp_path):  # noqa: F811
    """Half a head registers badly: the QC gate refuses it, and the results are the refusal and the QC picture (as a
    secondary capture), not a number."""
    data = np.asarray(oblique.dataobj, np.float32).copy()
    data[:, :, data.shape[2] // 2 :] = 0
    dicom = tmp_path / "study"
    uid = write_series(dicom / "t1", nib.Nifti1Image(data, oblique.affine))
    done = _run(app, dicom, tmp_path / "out", tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert not result["answered"] and result["probabilities"] == {}
    (reason,) = result["refused"].values()
    assert "QC gate" in reason and "--profile" in reason, reason
    assert result["picture"] == "picture.png" and (tmp_path / "out" / "picture.png").is_file()
    report = _report(tmp_path / "out" / "report.dcm")
    assert report["items"]["Finding"].startswith("refused: ") and report["series"] == [uid]
    capture = pydicom.dcmread(tmp_path / "out" / "picture.dcm")
    assert "preprocessing QC" in capture.SeriesDescription and capture.pixel_array.shape[2] == 3


def test_model_ts_refuses_a_volume_off_its_grid(app):
    compiled = torch.jit.load(str(app / "bundle" / "models" / "model.ts"))
    grid = json.loads((app / "bundle" / "models" / "run_settings.json").read_text())["grid"]["shape"]
    with pytest.raises(torch.jit.Error, match=re.escape(f"spatial shape {grid}, not")):
        compiled(700 * torch.rand(1, 1, grid[0] + 3, *grid[1:]))


def test_only_the_probabilities_of_the_sdk_output_are_read():
    """The SDK's classification output carries ``result`` labels derived from the probabilities cast to int: every
    label is the first class. The application reads the probabilities only."""
    pred = {"result": ["CN", "CN"], "probabilities": np.array([[0.2, 0.8]], np.float32)}
    assert sdk_probabilities(pred, ["CN", "AD"]) == pytest.approx({"CN": 0.2, "AD": 0.8})
    assert sdk_probabilities(pred, ["CN", "MCI", "AD"]) == {}  # another number of classes: no answer


def test_a_compiled_model_that_is_not_the_eager_one_is_refused(tmp_path):
    result = StudyResult(study=str(tmp_path), model={"name": "m", "version": "1"}, series="T1")
    result.eager_probabilities = {"CN": 0.3, "AD": 0.7}
    prepared = PreparedStudy(result, image="on-grid.nii.gz")
    finish_study(prepared, {"CN": 0.31, "AD": 0.69}, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "result.json").read_text())
    assert not written["answered"] and "the compiled model (model.ts)" in written["refused"]["T1"]
    prepared.result.refused.clear()
    finish_study(prepared, {"CN": 0.3 + 1e-7, "AD": 0.7 - 1e-7}, tmp_path / "same")
    assert json.loads((tmp_path / "same" / "result.json").read_text())["predicted"] == "AD"


def test_a_series_whose_first_slice_is_empty_keeps_its_fractional_intensities(oblique, tmp_path):  # noqa: F811
    """The SDK's series-to-volume step takes the voxel type of the first slice: an empty first slice stored with
    slope 1 makes every later slice integer. The application reads series with ITK as float instead."""
    folder = tmp_path / "series"
    write_series(folder, oblique)
    files = sorted(folder.iterdir(), key=lambda f: int(pydicom.dcmread(f).InstanceNumber))
    first = pydicom.dcmread(files[0])
    first.PixelData = np.zeros((first.Rows, first.Columns), np.int16).tobytes()
    first.RescaleSlope = "1"
    first.save_as(files[0])
    slope = float(pydicom.dcmread(files[1]).RescaleSlope)
    assert slope != round(slope)  # the other slices are fractional
    (series,) = find_series(folder)
    volume = np.asarray(nib.load(series_to_nifti(series, tmp_path / "t1.nii.gz")).dataobj)
    source = np.asarray(oblique.dataobj, np.float32)
    assert volume.dtype.kind == "f" and np.all(volume[:, :, 0] == 0)
    np.testing.assert_allclose(volume[:, :, 1:], source[:, :, 1:], atol=slope)


def test_deploy_refuses_a_bundle_without_a_compiled_model(trained_demo, app, tmp_path):
    bundle = export_bundle(trained_demo, tmp_path / "plain_mri_classification", torchscript=False).folder
    assert cli.main(["deploy", str(bundle), str(tmp_path / "app")]) == 2
    assert cli.main(["deploy", str(app / "bundle"), str(app)]) == 2  # an existing folder is not replaced
    with pytest.raises(InputError, match="models/model.ts"):
        from axial_monai.deploy import write_application

        write_application(bundle, tmp_path / "app")


def test_a_model_ts_with_configs_of_its_own_is_refused(app, tmp_path):
    """The SDK evaluates the ``$`` expressions of the configs inside ``model.ts``: a receiver runs only the configs
    this installation writes."""
    from axial_monai.deploy.folder import check_compiled_configs

    shipped = app / "bundle" / "models" / "model.ts"
    check_compiled_configs(shipped)  # the exported one passes
    tampered = tmp_path / "model.ts"
    with zipfile.ZipFile(shipped) as source, zipfile.ZipFile(tampered, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("extra/inference.json"):
                config = json.loads(data)
                config["device"] = "$__import__('os').system('touch /tmp/owned') or torch.device('cpu')"
                data = json.dumps(config).encode()
            target.writestr(info, data)
    with pytest.raises(InputError, match="is not the one axial-monai"):
        check_compiled_configs(tampered)
