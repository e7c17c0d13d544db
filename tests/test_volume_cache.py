"""The compact volume cache (axial_monai.data.VolumeCacheDataset) and the device-side restore (PrepareVolumeBatch).

Scans are the real MNI 2009c brain template, downsampled to 4 mm and perturbed per subject, written as NIfTI.
Decoding is counted by wrapping MONAI's LoadImage, the one place a NIfTI file is read.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import TINY, run, workflow
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, LoadImage, RandGaussianNoised

from axial_monai.data import VolumeCacheDataset
from axial_monai.data.atlas import template_path
from axial_monai.data.volume_cache import VolumeStore, box_keys, transform_signature
from axial_monai.engines import PrepareVolumeBatch
from axial_monai.networks import AxialNet
from axial_monai.run import RunSettings
from axial_monai.transforms import RandSliceSampled, load_volume


@pytest.fixture
def decodes(monkeypatch):
    """Counter of NIfTI files decoded (by file name) while the test runs."""
    counter: Counter = Counter()
    original = LoadImage.__call__

    def counting(self, filename, *args, **kwargs):
        counter[os.path.basename(str(filename))] += 1
        return original(self, filename, *args, **kwargs)

    monkeypatch.setattr(LoadImage, "__call__", counting)
    return counter


def _write_scan(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))


@pytest.fixture(scope="module")
def template_4mm():
    img = nib.load(template_path())
    affine = img.affine.copy()
    affine[:3, :3] *= 4
    return np.asarray(img.dataobj, dtype=np.float32)[::4, ::4, ::4], affine


@pytest.fixture
def scans(tmp_path, template_4mm):
    """Five 4 mm scans (49 x 58 x 49) of the real template, each with its own scaling, noise and shift."""
    data, affine = template_4mm
    rng = np.random.default_rng(0)
    items = []
    for i in range(5):
        vol = np.roll(data * rng.uniform(0.7, 1.3), shift=int(rng.integers(-3, 4)), axis=i % 3)
        vol = np.where(vol > 0, vol + rng.normal(0, 2.0, vol.shape), 0)
        path = tmp_path / "scans" / f"sub-{i:02d}_T1w.nii.gz"
        path.parent.mkdir(exist_ok=True)
        _write_scan(path, vol, affine)
        items.append({"image": str(path), "label": i % 2})
    return items


def _dataset(items, cache_dir, **kwargs):
    return VolumeCacheDataset(items, load_volume("image", **kwargs.pop("load", {})), cache_dir=cache_dir, **kwargs)


def _restored(dataset, indices=None):
    """Full float32 volumes (N, 1, X, Y, Z) restored from a cached dataset through PrepareVolumeBatch."""
    batch = next(iter(DataLoader(dataset if indices is None else dataset[indices], batch_size=len(dataset))))
    return PrepareVolumeBatch()(batch, "cpu")[0]


def test_each_scan_is_decoded_once_and_restored_exactly(scans, tmp_path, decodes):
    reference = torch.stack([load_volume("image")(dict(item))["image"] for item in scans])
    decodes.clear()
    cached = _dataset(scans, tmp_path / "cache", dtype="float32")
    assert sum(decodes.values()) == len(scans)
    for _ in range(2):  # two "epochs"
        restored = _restored(cached)
    assert sum(decodes.values()) == len(scans)
    # cropping to the brain box and padding back is lossless: the network sees the same volume
    assert torch.equal(restored.as_tensor(), reference.as_tensor())
    item = cached[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape[1:] != reference.shape[2:]  # a cropped box
    assert item["image"].meta["filename_or_obj"] == scans[0]["image"]
    np.testing.assert_allclose(np.asarray(item["image"].affine), np.asarray(reference[0].affine))


def test_uint8_cache_is_compact_and_close(scans, tmp_path):
    reference = torch.stack([load_volume("image")(dict(item))["image"] for item in scans]).as_tensor()
    cached = _dataset(scans, tmp_path / "cache", dtype="uint8")
    assert cached[0]["image"].dtype == torch.uint8
    full_bytes = reference[0].numel() * 4
    assert cached.cache_bytes() < 0.2 * full_bytes * len(scans)  # uint8 and the brain box: < 1/5 of float32
    restored = _restored(cached).as_tensor()
    assert (restored - reference).abs().max() <= 0.5 / 255 + 1e-6  # rounding to 1/255 steps of [0, 1]
    assert (restored[reference == 0] == 0).all()  # background stays exactly 0


def test_network_sees_the_same_input_with_and_without_cache(scans, tmp_path):
    net = AxialNet(backbone="resnet18", num_slices=6, image_size=32, freeze=0.0).eval()
    plain = VolumeCacheDataset(scans, load_volume("image"), cache="none")
    fp32 = _dataset(scans, tmp_path / "c32", dtype="float32")
    u8 = _dataset(scans, tmp_path / "c8", dtype="uint8")
    prepare = PrepareVolumeBatch()
    inputs = {}
    for name, ds in {"none": plain, "float32": fp32, "uint8": u8}.items():
        batch = next(iter(DataLoader(ds, batch_size=3)))
        inputs[name], labels = prepare(batch, "cpu")
        assert labels.tolist() == [s["label"] for s in scans[:3]]
    with torch.no_grad():
        logits = {k: net(v) for k, v in inputs.items()}
        slices = {k: net.encoder.slicer(v) for k, v in inputs.items()}
    assert torch.equal(inputs["float32"].as_tensor(), inputs["none"].as_tensor())
    assert torch.equal(slices["float32"], slices["none"]) and torch.equal(logits["float32"], logits["none"])
    torch.testing.assert_close(logits["uint8"], logits["none"], rtol=0, atol=2e-2)
    assert torch.equal(logits["uint8"].argmax(1), logits["none"].argmax(1))


def test_memory_mode_caches_in_ram(scans, decodes):
    cached = VolumeCacheDataset(scans, load_volume("image"), cache="memory", dtype="uint8")
    for _ in range(3):
        _restored(cached)
    assert sum(decodes.values()) == len(scans)
    assert cached.store is None and cached.cache_bytes() > 0


def test_second_dataset_on_the_same_cache_decodes_nothing(scans, tmp_path, decodes):
    _dataset(scans, tmp_path / "cache")
    decodes.clear()
    again = _dataset(scans, tmp_path / "cache")
    _restored(again)
    assert sum(decodes.values()) == 0


def test_changed_setting_or_file_invalidates_the_entry(scans, tmp_path, decodes, template_4mm):
    cache = tmp_path / "cache"
    _dataset(scans, cache)
    decodes.clear()
    # another intensity setting: every scan is decoded again, into new entries (both kinds stay usable)
    zscore = _dataset(scans, cache, dtype="float16", load={"intensity": "zscore"})
    assert sum(decodes.values()) == len(scans)
    assert float(_restored(zscore).min()) < 0  # z-scores, not [0, 1]
    _dataset(scans, cache, load={"intensity": "percentile"})  # the first entries are still there
    assert sum(decodes.values()) == len(scans)
    # a changed file: only that scan is decoded again, and its item shows the new content
    data, affine = template_4mm
    changed = Path(scans[2]["image"])
    _write_scan(changed, np.roll(data, 6, axis=1), affine)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    decodes.clear()
    refreshed = _dataset(scans, cache)
    assert decodes == Counter({changed.name: 1})
    expected = load_volume("image")({"image": str(changed)})["image"].as_tensor()
    got = _restored(refreshed, [2])[0].as_tensor()
    assert (got - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_damaged_entries_are_rebuilt_with_a_warning(scans, tmp_path, decodes):
    cache = tmp_path / "cache"
    first = _dataset(scans, cache)
    expected = _restored(first).as_tensor()
    store = VolumeStore(cache)
    names = first._names
    npy0, _ = store.paths(names[0])
    npy0.write_bytes(npy0.read_bytes()[:200])  # truncated array
    npy1, _ = store.paths(names[1])
    raw = bytearray(npy1.read_bytes())
    raw[-100:] = bytes(255 - b for b in raw[-100:])  # same size, flipped bytes: only the checksum sees it
    npy1.write_bytes(bytes(raw))
    store.paths(names[2])[1].write_text("{not json")  # unreadable record
    decodes.clear()
    with pytest.warns(UserWarning, match="damaged") as record:
        again = _dataset(scans, cache)
        restored = _restored(again).as_tensor()
    messages = " ".join(str(w.message) for w in record)
    for i in (0, 1, 2):
        assert Path(scans[i]["image"]).name in messages
    assert torch.equal(restored, expected)
    assert sorted(decodes) == sorted(Path(scans[i]["image"]).name for i in (0, 1, 2))
    decodes.clear()
    _restored(_dataset(scans, cache))  # rebuilt entries are good again
    assert sum(decodes.values()) == 0


def test_store_is_pickle_free(scans, tmp_path):
    cached = _dataset(scans, tmp_path / "cache")
    npy, meta = VolumeStore(tmp_path / "cache").paths(cached._names[0])
    array = np.load(npy, allow_pickle=False)  # plain arrays only
    record = json.loads(meta.read_text())
    assert array.dtype == np.uint8 and list(array.shape) == record["shape"]
    assert record["source"] == os.path.realpath(scans[0]["image"]) and record["storage"] == "uint8"


def test_bad_input_is_refused_by_name(scans, tmp_path):
    with pytest.raises(ValueError, match="deterministic"):
        VolumeCacheDataset(scans, Compose([load_volume(), RandGaussianNoised("image", prob=1.0)]), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="cache must be one of"):
        VolumeCacheDataset(scans, load_volume(), cache="ram")
    with pytest.raises(ValueError, match="uint8"):
        _dataset(scans, tmp_path / "z", dtype="uint8", load={"intensity": "zscore"})
    missing = [*scans, {"image": str(tmp_path / "sub-missing_T1w.nii.gz"), "label": 0}]
    with pytest.raises(ValueError, match="sub-missing_T1w.nii.gz: the image file does not exist"):
        _dataset(missing, tmp_path / "cache")
    broken = tmp_path / "sub-broken_T1w.nii.gz"
    broken.write_bytes(b"not a nifti file")
    with pytest.raises(ValueError, match="Cannot cache .*sub-broken_T1w.nii.gz"):
        _dataset([*scans, {"image": str(broken), "label": 0}], tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.json"))) == len(scans)  # the good scans' work is kept


def test_augmentation_runs_on_the_restored_volume_every_time(scans, tmp_path):
    cached = _dataset(scans, tmp_path / "cache", dtype="float32")
    batch = next(iter(DataLoader(cached, batch_size=2)))
    clean = PrepareVolumeBatch()(batch, "cpu")[0]
    noisy = PrepareVolumeBatch(augmentation=Compose([RandGaussianNoised("image", prob=1.0, std=0.05)]), seed=3)
    first, second = noisy(batch, "cpu")[0], noisy(batch, "cpu")[0]
    assert first.shape == clean.shape and isinstance(first, MetaTensor)
    assert not torch.equal(first, second)  # a new draw each call
    assert 0.02 < float((first - clean).std()) < 0.08
    again = PrepareVolumeBatch(augmentation=Compose([RandGaussianNoised("image", prob=1.0, std=0.05)]), seed=3)
    assert torch.equal(again(batch, "cpu")[0], first)  # seeded
    # the 2D majority-voting baseline samples one slice per volume the same way
    slices = PrepareVolumeBatch(augmentation=RandSliceSampled("image", plane=1, num_slices=6), seed=0)(batch, "cpu")
    assert slices[0].shape == (2, 1, clean.shape[2], clean.shape[4])


@pytest.mark.parametrize("cache", ["disk", "memory"])
def test_bundle_training_decodes_each_scan_once(cache, tiny_cohort, tmp_path, decodes):
    """train.json, 2 epochs (2 validations) + the test evaluation + the mean control scan: every scan is decoded once
    (the nested loading Compose no longer stops the cache); with the disk cache a second run decodes nothing."""
    splits = json.loads((Path(tiny_cohort) / "datalist.json").read_text())
    n = {k: len(v) for k, v in splits.items()}
    cache_dir = str(tmp_path / "volumes")
    settings = {**TINY, "num_workers": 2, "epochs": 2, "cache": cache, "cache_dir": cache_dir}
    run(workflow(["train"], dataset_dir=tiny_cohort, output_dir=str(tmp_path / "run1"), **settings))
    assert (tmp_path / "run1" / "eval-test" / "predictions.csv").is_file()
    assert sum(decodes.values()) == n["training"] + n["validation"] + n["test"]
    assert max(decodes.values()) == 1
    # the mean control scan the checkpoint carries was made from the cached volumes: no decode of its own
    assert RunSettings.load(tmp_path / "run1").control_count == sum(i["label"] == 0 for i in splits["training"])
    if cache == "disk":  # a second run (another output folder) decodes nothing at all
        decodes.clear()
        run(workflow(["train"], dataset_dir=tiny_cohort, output_dir=str(tmp_path / "run2"), **settings))
        assert sum(decodes.values()) == 0
        assert len(pd.read_csv(tmp_path / "run2" / "eval-test" / "predictions.csv")) == n["test"]
        assert len(list(Path(cache_dir).glob("*.npy"))) == sum(n.values())


def _with(chain, step: int, attribute: str, value):
    """``chain`` with one setting of its ``step``-th transform (or of that transform's inner one) changed."""
    target = chain.transforms[step]
    inner = getattr(target, "normalizer", None) or getattr(target, "checker", None)
    setattr(inner if inner is not None and hasattr(inner, attribute) else target, attribute, value)
    return chain


def _changes(check):
    """One change of every setting of the cached chain, by constructor argument (load_volume, CheckVolume,
    RobustNormalizeIntensity(d), InputCheck), from the chain ``load_volume("image", check=check(...))``."""
    from axial_monai.input_check import Grid

    shifted = Grid.from_affine(check().grid.shape, np.asarray(check().grid.affine) + np.eye(4, k=3))
    base = lambda: load_volume("image", check=check())  # noqa: E731
    return {
        "keys": lambda: load_volume("scan", check=check()),
        "intensity": lambda: load_volume("image", intensity="zscore", check=check()),
        "spatial_shape": lambda: load_volume("image", spatial_shape=(49, 58, 49), check=check()),
        "pixdim": lambda: load_volume("image", pixdim=(4, 4, 4), check=check()),
        "atol": lambda: _with(base(), 2, "atol", 0.5),
        "mode": lambda: _with(base(), 3, "mode", "zscore"),
        "lower": lambda: _with(base(), 3, "lower", 1.0),
        "upper": lambda: _with(base(), 3, "upper", 99.0),
        "threshold": lambda: _with(base(), 3, "threshold", 0.1),
        "mask_key": lambda: _with(base(), 3, "mask_key", "brain"),
        "check": lambda: load_volume("image"),
        "grid": lambda: load_volume("image", check=check(grid=shifted)),
        "brain_mask": lambda: load_volume("image", check=check(brain_mask=np.zeros(shifted.shape, bool))),
        "max_outside": lambda: load_volume("image", check=check(max_outside=0.2)),
        "dilation_mm": lambda: load_volume("image", check=check(dilation_mm=2.0)),
    }


def test_every_setting_of_the_cached_chain_changes_its_key(scans):
    """Changing any one setting gives another key (a stale entry is never reused); running the chain, or a name
    that only appears in messages (the check's ``model``), does not."""
    import inspect

    from axial_monai.input_check import InputCheck, read_grid
    from axial_monai.transforms.intensity import RobustNormalizeIntensityd
    from axial_monai.transforms.validation import CheckVolume

    grid = read_grid(scans[0]["image"])

    def check(**changed):
        return InputCheck(**{"grid": grid, "brain_mask": np.ones(grid.shape, bool), "model": "run", **changed})

    changes = _changes(check)
    settings = {
        name
        for cls in (load_volume, CheckVolume, RobustNormalizeIntensityd, InputCheck)
        for name in inspect.signature(cls).parameters
    } - {"allow_missing_keys", "model"}
    assert settings == set(changes), "a setting of the cached chain has no change in _changes"
    before = transform_signature(load_volume("image", check=check()))
    chain = load_volume("image", check=check(model="another run"))
    chain(dict(scans[0]))  # readers and transforms keep run-time state (last file name, tracing flags)
    assert transform_signature(chain) == before
    for name, changed in changes.items():
        assert transform_signature(changed()) != before, name


def test_a_transform_without_cache_key_is_not_cached(scans, tmp_path):
    from monai.transforms import Compose, LoadImaged

    from axial_monai.errors import SettingsError

    chain = Compose([LoadImaged("image", ensure_channel_first=True)])
    with pytest.raises(SettingsError, match="LoadImaged has no cache_key"):
        VolumeCacheDataset(scans, chain, cache_dir=tmp_path)
    assert len(VolumeCacheDataset(scans, chain, cache="none")) == len(scans)


def test_box_keys():
    assert box_keys("image") == ("image_box_start", "image_spatial_shape", "image_scale")
