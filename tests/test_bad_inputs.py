"""The bad-input corpus: every kind of bad input a user can give, at the entry point that meets it first.

One table (:data:`CASES`): case id, entry point, a builder that writes the bad input into a fresh folder, and the
fragment the message must contain. Every message must name the file or row (what the builder returns) and be one
line; the entry points are the real ones a user hits:

* ``inference``: :func:`~axial_monai.data.datalist.inference_datalist` with a run's
  :class:`~axial_monai.input_check.InputCheck` (what inference, explain and predict build their batch with): the
  bad scan is skipped into ``skipped.csv``, the good one next to it is kept;
* ``training-cache``: the training dataset (:class:`~axial_monai.data.VolumeCacheDataset` over ``load_volume``)
  with a good scan next to the bad one: refused in one message;
* ``training-settings``: :func:`~axial_monai.run.training.training_settings`
  (the grid of the training images, before anything trains);
* ``datalist``: :func:`~axial_monai.data.datalist.load_split` as ``train.json`` calls it;
* ``crossval``: :func:`~axial_monai.crossval.leakage.check_no_leakage`;
* ``clinica`` / ``check-bids``: :func:`~axial_monai.data.clinica.load_clinica_table` (datalist building) and
  :func:`~axial_monai.data.bids_check.check_bids_tree` (``axial-monai check-bids``) on a small BIDS tree;
* ``checkpoint`` / ``transfer``: :func:`~axial_monai.run.load_run_settings` and ``init_ckpt``.

Then the batch guarantees: bundle inference over a folder with one bad scan among good ones predicts all the good
ones and lists the bad one in ``skipped.csv``; training refuses a datalist with several bad items in one message
listing them all, and ``drop_bad_items`` trains on the others.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import TINY, run, workflow

from axial_monai.crossval.leakage import check_no_leakage
from axial_monai.data import VolumeCacheDataset
from axial_monai.data.bids_check import check_bids_tree
from axial_monai.data.clinica import load_clinica_table
from axial_monai.data.datalist import inference_datalist, load_split
from axial_monai.errors import InputError
from axial_monai.input_check import InputCheck, read_grid
from axial_monai.networks import AxialNet
from axial_monai.networks.transfer import init_from_checkpoint
from axial_monai.run import load_run_settings
from axial_monai.run.training import training_settings as run_training_settings
from axial_monai.transforms import load_volume

#: a 3 mm grid with a brain-like block of tissue inside
AFFINE = np.array([[3.0, 0, 0, -30], [0, 3.0, 0, -36], [0, 0, 3.0, -30], [0, 0, 0, 1]])
SHAPE = (20, 24, 20)


def _volume(seed: int = 0) -> np.ndarray:
    volume = np.zeros(SHAPE, np.float32)
    volume[5:15, 6:18, 5:15] = np.random.default_rng(seed).uniform(0.5, 1.5, (10, 12, 10))
    return volume


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _good(d: Path, name: str = "good.nii.gz", seed: int = 0) -> Path:
    return _save(d / name, _volume(seed))


# --- builders: each writes one bad input into d and returns (input, what the message must name) ----------------


def truncated_gz(d):
    raw = _good(d, "full.nii.gz").read_bytes()
    (d / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    return d / "truncated.nii.gz", "truncated.nii.gz"


def text_named_nii(d):
    (d / "notes.nii").write_text("subject 12, session 3: rescan requested\n" * 20)
    return d / "notes.nii", "notes.nii"


def corrupt_data(d):
    """A complete, valid header whose voxel data stops after 1000 bytes."""
    path = _save(d / "corrupt.nii", _volume())
    path.write_bytes(path.read_bytes()[: 352 + 1000])
    assert nib.load(path).shape == SHAPE  # the header alone is fine
    return path, "corrupt.nii"


def two_d(d):
    return _save(d / "slice.nii.gz", _volume()[:, :, 10]), "slice.nii.gz"


def four_d(d):
    return _save(d / "bold.nii.gz", np.stack([_volume(), _volume(1)], -1)), "bold.nii.gz"


def with_nan(d):
    volume = _volume()
    volume[8, 9, 10] = np.nan
    return _save(d / "nan.nii.gz", volume), "nan.nii.gz"


def with_inf(d):
    volume = _volume()
    volume[8, 9, 10] = np.inf
    return _save(d / "inf.nii.gz", volume), "inf.nii.gz"


def all_zero(d):
    return _save(d / "zero.nii.gz", np.zeros(SHAPE, np.float32)), "zero.nii.gz"


def singular_affine(d):
    """sform with a zero third voxel axis (qform unset): no 3D grid."""
    image = nib.Nifti1Image(_volume(), AFFINE)
    singular = AFFINE.copy()
    singular[2, 2] = 0.0
    image.set_qform(None, code=0)
    image.set_sform(singular, code=2)
    path = d / "singular.nii.gz"
    nib.save(image, path)
    return path, "singular.nii.gz"


def missing(d):
    return d / "absent.nii.gz", "absent.nii.gz"


def _datalist(d: Path, splits: dict[str, list[dict]]) -> tuple[Path, str]:
    _good(d, "a.nii.gz")
    _good(d, "b.nii.gz", seed=1)
    path = d / "datalist.json"
    path.write_text(json.dumps(splits))
    return path, str(path)


def no_image_key(d):
    return _datalist(d, {"training": [{"image": "a.nii.gz", "label": 0}, {"t1": "b.nii.gz", "label": 1}]})


def no_label_key(d):
    return _datalist(d, {"training": [{"image": "a.nii.gz", "label": 0}, {"image": "b.nii.gz"}]})


def unknown_label(d):
    return _datalist(d, {"training": [{"image": "a.nii.gz", "label": 0}, {"image": "b.nii.gz", "label": "AD"}]})


def empty_split(d):
    return _datalist(d, {"training": [{"image": "a.nii.gz", "label": 0}], "validation": []})


def duplicated_row(d):
    row = {"image": "a.nii.gz", "label": 0}
    return _datalist(d, {"training": [row, {"image": "b.nii.gz", "label": 1}, row]})


def subject_in_two_splits(d):
    splits = {
        "training": [{"image": "a.nii.gz", "subject": "sub-007"}, {"image": "b.nii.gz", "subject": "sub-008"}],
        "validation": [{"image": "c.nii.gz", "subject": "sub-007"}],
    }
    return splits, "sub-007"


def _bids(d: Path, sessions: str = "session_id\tdiagnosis\nses-M000\tCN\n", participants: str = "") -> Path:
    root = d / "bids"
    root.mkdir()
    (root / "participants.tsv").write_text(participants or "participant_id\tsex\nsub-01\tF\n")
    (root / "sub-01").mkdir()
    (root / "sub-01" / "sub-01_sessions.tsv").write_text(sessions)
    _good(root / "sub-01" / "ses-M000" / "anat", "sub-01_ses-M000_T1w.nii.gz")
    return root


def participants_without_id(d):
    root = _bids(d, participants="subject\tsex\nsub-01\tF\n")
    return root, "participants.tsv"


def sessions_without_diagnosis(d):
    """Clinica keeps the diagnosis per session, in sub-X_sessions.tsv (participants.tsv has no diagnosis)."""
    root = _bids(d, sessions="session_id\tdx\nses-M000\tCN\n")
    return root, "sub-01_sessions.tsv"


def session_written_two_ways(d):
    root = _bids(d, sessions="session_id\tdiagnosis\nses-M000\tCN\nses-M048\tCN\n")
    _good(root / "sub-01" / "ses-M48" / "anat", "sub-01_ses-M48_T1w.nii.gz")
    return root, "sub-01_sessions.tsv line 3"


def dementia(d):
    root = _bids(d, sessions="session_id\tdiagnosis\nses-M000\tDementia\n")
    return root, "sub-01_sessions.tsv"


def _settings_state(ckpt: Path) -> dict:
    """Run settings of a real (tiny) resnet18 run, via training_settings on a two-scan datalist."""
    folder = ckpt.parent / "data"
    datalist, _ = _datalist(
        folder, {"training": [{"image": "a.nii.gz", "label": 0}, {"image": "b.nii.gz", "label": 1}]}
    )
    recipe = functools.partial(
        AxialNet, num_classes=2, backbone="resnet18", plane=1, num_slices=4, image_size=32, pretrained="none"
    )
    settings = run_training_settings(
        recipe, ["CN", "AD"], dataset_dir=str(folder), datalist=str(datalist), template=str(folder / "a.nii.gz")
    )
    return settings.state_dict()


def other_architecture(d):
    """resnet34 weights under the settings of a resnet18 run."""
    ckpt = d / "models" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    weights = AxialNet(num_classes=2, backbone="resnet34", plane=1, num_slices=4, image_size=32).state_dict()
    torch.save({"model": weights, "run": _settings_state(ckpt)}, ckpt)
    return ckpt, "model.pt"


def other_architecture_transfer(d):
    ckpt = d / "resnet34.pt"
    torch.save({"model": AxialNet(backbone="resnet34", num_slices=4, image_size=32).state_dict()}, ckpt)
    return ckpt, "resnet34.pt"


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickled_payload(d):
    ckpt = d / "models" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.ones(1)}, "run": {"x": _Payload(d / "payload-ran")}}, ckpt)
    return ckpt, "model.pt"


def too_few_slices(d):
    """4 mm images with 10 voxels along the coronal axis, for a network of 16 coronal slices."""
    coarse = np.diag([4.0, 4.0, 4.0, 1.0])
    folder = d / "data"
    for name, seed in (("a.nii.gz", 0), ("b.nii.gz", 1)):
        _save(folder / name, _volume(seed)[:, ::2][:, :10], coarse)
    datalist = folder / "datalist.json"
    datalist.write_text(
        json.dumps({"training": [{"image": "a.nii.gz", "label": 0}, {"image": "b.nii.gz", "label": 1}]})
    )
    return datalist, "a.nii.gz"


# --- entry points: each returns the message the user gets ---------------------------------------------------------


def _raises(call: Callable[[], Any], kind: type[BaseException] = InputError) -> str:
    with pytest.raises(kind) as err:
        call()
    return str(err.value)


def inference(path: Path, d: Path) -> str:
    """The batch of inference/explain/predict: the bad scan is skipped into skipped.csv, the good one kept."""
    good = _good(d, "ok.nii.gz")
    check = InputCheck(read_grid(good), _volume() > 0, model="runs/demo")
    items = inference_datalist([str(path), str(good)], check=check)
    assert not (d / "out").exists()  # nothing is written while the config resolves
    items.report(d / "out")
    assert [item["image"] for item in items] == [str(good)]
    skipped = pd.read_csv(d / "out" / "skipped.csv")
    assert skipped["file"].tolist() == [str(path)]
    return f"{skipped['file'][0]}: {skipped['problem'][0]}"


def training_cache(path: Path, d: Path) -> str:
    good = _good(d, "ok.nii.gz")
    data = [{"image": str(good), "label": 0}, {"image": str(path), "label": 1}]
    return _raises(lambda: VolumeCacheDataset(data, load_volume("image"), cache="memory", progress=False))


def training_settings(datalist: Path, d: Path) -> str:
    recipe = functools.partial(
        AxialNet, num_classes=2, backbone="resnet18", plane=1, num_slices=16, image_size=32, pretrained="none"
    )
    folder = datalist.parent
    template = str(folder / "a.nii.gz")
    call = functools.partial(run_training_settings, recipe, ["CN", "AD"], dataset_dir=str(folder))
    return _raises(lambda: call(datalist=str(datalist), template=template))


def datalist_training(datalist: Path, d: Path) -> str:
    """As train.json loads its training split."""
    return _raises(lambda: load_split(str(d), "training", str(datalist), keys=["image", "label"], num_classes=2))


def datalist_validation(datalist: Path, d: Path) -> str:
    return _raises(lambda: load_split(str(d), "validation", str(datalist), keys=["image", "label"], num_classes=2))


def crossval(splits: dict, d: Path) -> str:
    return _raises(lambda: check_no_leakage(splits, fold=2))


def clinica(root: Path, d: Path) -> str:
    return _raises(lambda: load_clinica_table(root))


def check_bids(root: Path, d: Path) -> str:
    report = check_bids_tree(root)
    assert not report.usable
    return str(report.errors[0])


def checkpoint(ckpt: Path, d: Path) -> str:
    message = _raises(lambda: load_run_settings(ckpt))
    assert not (d / "payload-ran").exists()  # a pickled payload never runs
    return message


def transfer(ckpt: Path, d: Path) -> str:
    return _raises(lambda: init_from_checkpoint(AxialNet(backbone="resnet18", num_slices=4, image_size=32), ckpt))


#: (case id, entry point, builder, expected message fragment)
CASES = [
    ("truncated-gz", inference, truncated_gz, "cannot be read as NIfTI (EOFError"),
    ("truncated-gz", training_cache, truncated_gz, "Compressed file ended"),
    ("non-nifti-with-nii-name", inference, text_named_nii, "cannot be read as NIfTI (ImageFileError"),
    ("fine-header-corrupt-data", inference, corrupt_data, "could the file be damaged?"),
    ("fine-header-corrupt-data", training_cache, corrupt_data, "Expected 38400 bytes, got 1000 bytes"),
    ("2d-image", inference, two_d, "is not a single 3D volume (a 2D image, shape (20, 24))"),
    ("2d-image", training_cache, two_d, "expected a single 3D volume"),
    ("4d-two-volumes", inference, four_d, "is not a single 3D volume (a 4D image of 2 volumes"),
    ("4d-two-volumes", training_cache, four_d, "got (2, 20, 24, 20); 4D (time series)"),
    ("nan-voxels", inference, with_nan, "has 1 NaN or infinite voxels"),
    ("nan-voxels", training_cache, with_nan, "has 1 NaN or infinite voxels"),
    ("inf-voxels", inference, with_inf, "has 1 NaN or infinite voxels"),
    ("all-zero", inference, all_zero, "is empty (all voxels are 0)"),
    ("all-zero", training_cache, all_zero, "is empty (all voxels are 0)"),
    ("fewer-voxels-than-slices", training_settings, too_few_slices, "10 voxels along plane 1"),
    ("singular-affine", inference, singular_affine, "has a singular affine"),
    ("missing-file", inference, missing, "does not exist"),
    ("missing-file", training_cache, missing, "the image file does not exist"),
    ("datalist-without-image", datalist_training, no_image_key, "item 2 has no 'image'"),
    ("datalist-without-label", datalist_training, no_label_key, "item 2 has no 'label'"),
    ("unknown-label", datalist_training, unknown_label, "has label 'AD', not a class index 0..1"),
    ("subject-in-two-splits", crossval, subject_in_two_splits, "sub-007"),
    ("empty-split", datalist_validation, empty_split, "Split 'validation' of"),
    ("duplicated-row", datalist_training, duplicated_row, "item 3 repeats item 1"),
    ("participants-without-id", clinica, participants_without_id, "has no column 'participant_id'"),
    ("sessions-without-diagnosis", clinica, sessions_without_diagnosis, "has no column 'diagnosis'"),
    ("sessions-without-diagnosis", check_bids, sessions_without_diagnosis, "has no column diagnosis"),
    ("session-id-two-ways", check_bids, session_written_two_ways, "ses-M048 has no folder, but sub-01/ses-M48/"),
    ("dementia-refused", clinica, dementia, "line 2: 'Dementia'"),
    ("dementia-reported", check_bids, dementia, "diagnosis 'Dementia' of ses-M000 is not CN, MCI, AD or n/a"),
    ("other-architecture", checkpoint, other_architecture, "do not fit the run's network AxialNet(backbone='resnet18'"),
    ("other-architecture", transfer, other_architecture_transfer, "does not match AxialNet"),
    ("pickled-payload", checkpoint, pickled_payload, "carries a pickled Python object"),
]


def test_every_bad_input_and_entry_point_of_this_module_is_in_the_corpus():
    """A builder (``f(d)``) or an entry point (``f(given, d)``) written here but left out of :data:`CASES` would
    never be checked; so would a case listed twice (its second id would shadow the first)."""
    import inspect
    import sys

    functions = inspect.getmembers(sys.modules[__name__], inspect.isfunction)
    ours = [(name, f) for name, f in functions if f.__module__ == __name__ and not name.startswith(("_", "test_"))]
    builders = {f for _, f in ours if list(inspect.signature(f).parameters) == ["d"]}
    entries = {f for _, f in ours if list(inspect.signature(f).parameters)[-1:] == ["d"]} - builders
    assert builders - {build for _, _, build, _ in CASES} == set()
    assert entries - {entry for _, entry, _, _ in CASES} == set()
    pairs = [(case, entry.__name__) for case, entry, _, _ in CASES]
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize(
    ("entry", "build", "fragment"),
    [pytest.param(entry, build, fragment, id=f"{case}-{entry.__name__}") for case, entry, build, fragment in CASES],
)
def test_bad_input(entry, build, fragment, tmp_path):
    given, named = build(tmp_path)
    message = entry(given, tmp_path)
    assert fragment in message, message
    assert named in message, f"the message does not name {named}: {message}"
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message


def test_inference_over_a_folder_predicts_every_good_scan_and_skips_the_bad_one(trained_demo, tiny_cohort, tmp_path):
    """Bundle inference on a folder: three good scans, one whose header is fine but whose data is corrupt, and one
    that is not NIfTI at all behind a NIfTI name."""
    scans = tmp_path / "scans"
    scans.mkdir()
    good = sorted((Path(tiny_cohort) / "images").glob("*.nii.gz"))[:3]
    for image in good:
        shutil.copy(image, scans / image.name)
    bad = scans / "corrupt_T1w.nii"
    nib.save(nib.load(good[0]), bad)
    bad.write_bytes(bad.read_bytes()[:2000])
    (scans / "sub-broken_T1w.nii.gz").write_bytes(b"not a nifti file")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as ended:  # the batch finishes, then reports the skipped scan by its exit status
        run(
            workflow(
                ["inference"],
                "infer",
                input=str(scans),
                output_dir=str(out),
                ckpt_path=str(trained_demo / "models" / "model.pt"),
                num_workers=0,
            )
        )
    assert ended.value.code == 1
    predictions = pd.read_csv(out / "inference" / "predictions.csv")
    assert sorted(predictions["file"]) == sorted(str(scans / image.name) for image in good)
    skipped = pd.read_csv(out / "inference" / "skipped.csv").set_index("file")["problem"]
    assert sorted(skipped.index) == [str(bad), str(scans / "sub-broken_T1w.nii.gz")]
    assert "could the file be damaged?" in skipped[str(bad)]
    assert "cannot be read as NIfTI" in skipped[str(scans / "sub-broken_T1w.nii.gz")]
    assert not skipped.str.contains("\n").any()


def _cohort_copy(tiny_cohort: str, root: Path) -> tuple[Path, list[Path]]:
    """A copy of the tiny cohort's datalist with four training images broken: one missing, one not NIfTI, one on
    another grid (all three found from the header), and one with a NaN voxel (found only when the volume loads)."""
    data = json.loads((Path(tiny_cohort) / "datalist.json").read_text())
    root.mkdir()
    for items in data.values():
        for item in items:
            item["image"] = str(Path(tiny_cohort) / item["image"])
    broken = [root / f"{name}_T1w.nii.gz" for name in ("gone", "text", "shifted", "nan")]
    broken[1].write_text("not an image\n")
    image = nib.load(data["training"][2]["image"])
    shifted = image.affine.copy()
    shifted[:3, 3] += 30.0
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted), broken[2])
    voxels = np.asarray(image.dataobj, dtype=np.float32).copy()
    voxels[tuple(s // 2 for s in voxels.shape)] = np.nan
    nib.save(nib.Nifti1Image(voxels, image.affine), broken[3])
    for n, path in enumerate(broken):
        data["training"][n]["image"] = str(path)
    (root / "datalist.json").write_text(json.dumps(data))
    return root / "datalist.json", broken


def test_training_refuses_bad_items_all_at_once_or_drops_them(tiny_cohort, tmp_path):
    datalist, broken = _cohort_copy(tiny_cohort, tmp_path / "data")
    settings = {"dataset_dir": tiny_cohort, "datalist": str(datalist), "epochs": 1, **TINY}
    with pytest.raises(Exception) as caught:
        run(workflow(["train"], output_dir=str(tmp_path / "refused"), **settings))
    err = caught.value
    while err.__cause__ is not None:
        err = err.__cause__
    message = str(err)
    # one message: the three refused from their header and the damaged voxel data behind a fine header
    assert isinstance(err, InputError) and message.startswith("4 of the") and "drop_bad_items" in message
    assert all(str(path) in message for path in broken) and "\n" not in message
    assert "does not exist" in message and "cannot be read as NIfTI" in message and "shifted by" in message
    assert "NaN or infinite voxels" in message
    assert not (tmp_path / "refused" / "models").exists()

    out = tmp_path / "dropped"
    wf = workflow(["train"], output_dir=str(out), drop_bad_items=True, **settings)
    run(wf)
    assert (out / "models" / "model.pt").is_file()
    n_training = len(json.loads(datalist.read_text())["training"])
    assert len(wf.parser.get_parsed_content("train#dataset")) == n_training - 4  # trained on the others


def test_damaged_voxel_data_of_several_training_scans_is_listed_in_one_message(tmp_path):
    """Behind fine headers (found only when the volumes load): the training dataset lists them all at once, or
    leaves them out with drop_bad."""
    good = _good(tmp_path, "ok.nii.gz")
    bad = [corrupt_data(tmp_path)[0], with_nan(tmp_path)[0], all_zero(tmp_path)[0]]
    data = [{"image": str(p), "label": 0} for p in (good, *bad)]
    message = _raises(lambda: VolumeCacheDataset(data, load_volume("image"), cache="memory", progress=False))
    assert message.startswith("3 of the 4 scans to cache are unusable") and "\n" not in message
    assert all(str(p) in message for p in bad)
    kept = VolumeCacheDataset(data, load_volume("image"), cache="memory", progress=False, drop_bad=True)
    assert len(kept) == 1 and kept[0]["image"].meta["filename_or_obj"] == str(good)
