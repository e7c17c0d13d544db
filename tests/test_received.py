"""Receiving a model runs none of the sender's code: a corpus of malicious bundles.

Each case is made from a clean export of the session's demo run, the way an attacker would make it: changed after the
export (the manifest no longer fits) or by the sender (who rewrites the manifest too). ``axial-monai predict`` must
refuse each one in one line, or run with the payload inert. Every payload would create a sentinel file; it must never
appear.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from axial_monai import cli
from axial_monai.errors import InputError
from axial_monai.export import export_bundle
from axial_monai.predict import predict_scans
from axial_monai.run.received import MANIFEST, Limits, extract_zip, verify_manifest, write_manifest

NAME = "demo_mri_classification"
CONFIGS = ("inference", "explain", "train", "evaluate", "multi_gpu_train")


class Payload:
    """Unpickling this creates the sentinel (``pathlib.Path.touch``): the proof that the sender's code ran."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


@pytest.fixture(scope="module")
def clean(trained_demo, tmp_path_factory):
    """A clean export (no TorchScript: the cases do not need it)."""
    return export_bundle(trained_demo, tmp_path_factory.mktemp("clean") / NAME, torchscript=False)


@pytest.fixture
def scan(tiny_cohort):
    return Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"


def _copy(clean, tmp_path) -> Path:
    bundle = tmp_path / NAME
    shutil.copytree(clean.folder, bundle)
    return bundle


def _predict(bundle: Path, scan: Path, tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    """``axial-monai predict`` on the bundle: exit status and what it printed to stderr."""
    argv = ["predict", str(scan), "--model", str(bundle), "--out", str(tmp_path / "out")]
    status = cli.main([*argv, "--cache_dir", str(tmp_path / "cache"), *extra])
    return status, capsys.readouterr().err.strip()


def _refused(status: int, error: str, *words: str) -> None:
    assert status == 2 and len(error.splitlines()) == 1, error
    assert error.startswith("axial-monai predict: error: ") and "Traceback" not in error
    for word in words:
        assert word in error, (word, error)


def _expression(sentinel: Path) -> str:
    return f"$open({str(sentinel)!r}, 'w').write('ran') and torch.device('cpu')"


# --- the sender's code in the configs and scripts/ ------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_an_expression_in_a_config_is_inert_and_a_changed_config_refused(name, clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    sentinel = tmp_path / "ran"
    path = bundle / "configs" / f"{name}.json"
    config = json.loads(path.read_text())
    config["device"] = _expression(sentinel)
    path.write_text(json.dumps(config, indent=4) + "\n")
    status, error = _predict(bundle, scan, tmp_path, capsys)
    _refused(status, error, f"configs/{name}.json was changed after the export")
    write_manifest(bundle)  # the sender made it so: the manifest fits
    assert _predict(bundle, scan, tmp_path, capsys)[0] == 0
    assert not sentinel.exists()


@pytest.mark.parametrize("target", ["os.system", "subprocess.run"])
def test_a_target_naming_a_shell_is_inert(target, clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    sentinel = tmp_path / "ran"
    path = bundle / "configs" / "inference.json"
    config = json.loads(path.read_text())
    command = f"touch {sentinel}"
    config["network"] = {"_target_": target, **({"command": command} if target == "os.system" else {"args": command})}
    if target == "subprocess.run":
        config["network"]["shell"] = True
    path.write_text(json.dumps(config, indent=4) + "\n")
    write_manifest(bundle)
    assert _predict(bundle, scan, tmp_path, capsys)[0] == 0
    assert not sentinel.exists()


def test_scripts_with_a_side_effect_on_import_are_never_imported(clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    sentinel = tmp_path / "ran"
    init = bundle / "scripts" / "__init__.py"
    init.write_text(init.read_text() + f"\nopen({str(sentinel)!r}, 'w').write('ran')\n")
    write_manifest(bundle)
    assert _predict(bundle, scan, tmp_path, capsys, "--explain")[0] == 0
    assert not sentinel.exists()


def test_trusting_the_bundle_code_runs_it_and_says_so(clean, scan, tmp_path, capsys, caplog):
    """The opt-in: the bundle's configs run (here, a payload in them), with a warning naming what runs."""
    bundle = _copy(clean, tmp_path)
    sentinel = tmp_path / "ran"
    path = bundle / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["device"] = _expression(sentinel)
    path.write_text(json.dumps(config, indent=4) + "\n")
    write_manifest(bundle)
    with caplog.at_level(logging.WARNING):
        assert _predict(bundle, scan, tmp_path, capsys, "--trust_bundle_code")[0] == 0
    assert sentinel.exists()
    assert "Running the code of the bundle" in caplog.text and "scripts/" in caplog.text


# --- the settings and the weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "network, words",
    [
        ("builtins.eval", ["run_settings.json is not valid run settings at network/class"]),
        ("os.system", ["run_settings.json is not valid run settings at network/class"]),
        ("axial_monai.networks.axialnet.Payload", ["has no network 'Payload'"]),
        ("monai.networks.utils.eval_mode", ["only classes of ['axial_monai.networks', 'monai.networks.nets']"]),
        ("monai.networks.nets.densenet.torch", ["is not a network class"]),
    ],
)
def test_run_settings_naming_another_class_are_refused(network, words, clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    path = bundle / "models" / "run_settings.json"
    settings = json.loads(path.read_text())
    settings["network"]["class"] = network
    path.write_text(json.dumps(settings, indent=4) + "\n")
    write_manifest(bundle)
    _refused(*_predict(bundle, scan, tmp_path, capsys), *words)


def test_unknown_keys_and_paths_in_the_run_settings_are_refused(clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    path = bundle / "models" / "run_settings.json"
    settings = json.loads(path.read_text())
    settings["template"]["image"] = "../../outside.nii.gz"
    path.write_text(json.dumps(settings, indent=4) + "\n")
    write_manifest(bundle)
    _refused(*_predict(bundle, scan, tmp_path, capsys), "not valid run settings at template/image")
    settings["template"]["image"], settings["hook"] = "template.nii.gz", "x"
    path.write_text(json.dumps(settings, indent=4) + "\n")
    write_manifest(bundle)
    _refused(*_predict(bundle, scan, tmp_path, capsys), "Additional properties are not allowed ('hook'")


def test_settings_of_a_newer_version_are_refused_with_the_version_they_need(clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    path = bundle / "models" / "run_settings.json"
    settings = json.loads(path.read_text())
    settings["format"], settings["versions"]["axial-monai"] = 2, "0.9.0"
    path.write_text(json.dumps(settings, indent=4) + "\n")
    write_manifest(bundle)
    _refused(*_predict(bundle, scan, tmp_path, capsys), "have format 2", "install axial-monai 0.9.0 or later")


def test_weights_changed_after_the_export_are_refused(clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    weights = torch.load(bundle / "models" / "model.pt", weights_only=True)
    weights["head.bias"] += 1.0
    torch.save(weights, bundle / "models" / "model.pt")
    _refused(*_predict(bundle, scan, tmp_path, capsys), "models/model.pt was changed after the export")


def test_a_pickle_bearing_checkpoint_is_refused_and_never_runs(clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    sentinel = tmp_path / "ran"
    weights = torch.load(bundle / "models" / "model.pt", weights_only=True)
    torch.save({**weights, "payload": Payload(sentinel)}, bundle / "models" / "model.pt")
    write_manifest(bundle)
    _refused(*_predict(bundle, scan, tmp_path, capsys), "model.pt", "pickled")
    assert not sentinel.exists()


def test_missing_extra_and_linked_files_are_refused(clean, tmp_path):
    bundle = _copy(clean, tmp_path)
    (bundle / "docs" / "notes.txt").write_text("added later")
    with pytest.raises(InputError, match=r"docs/notes\.txt is not in manifest\.json"):
        verify_manifest(bundle)
    (bundle / "docs" / "notes.txt").unlink()
    (bundle / "eval").mkdir()  # what the bundle's own configs write, and Python's caches, do not count
    (bundle / "eval" / "predictions.csv").write_text("file\n")
    (bundle / "scripts" / "__pycache__").mkdir()
    verify_manifest(bundle)
    (bundle / "docs" / "README.md").unlink()
    with pytest.raises(InputError, match=r"docs/README\.md is missing"):
        verify_manifest(bundle)
    os.symlink("/etc/passwd", bundle / "docs" / "README.md")
    with pytest.raises(InputError, match=r"docs/README\.md is a link"):
        verify_manifest(bundle)
    (bundle / MANIFEST).unlink()
    with pytest.raises(InputError, match="has no manifest.json"):
        verify_manifest(bundle)


def test_a_metadata_file_of_several_gigabytes_is_refused_unread(clean, scan, tmp_path, capsys):
    bundle = _copy(clean, tmp_path)
    with open(bundle / "configs" / "metadata.json", "r+b") as handle:
        handle.truncate(3 * 2**30)  # sparse: 3 GB that take no disk
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"]["configs/metadata.json"]["bytes"] = 3 * 2**30  # the sender's manifest says so
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    _refused(*_predict(bundle, scan, tmp_path, capsys), "configs/metadata.json is 3221225472 bytes, over the")


# --- the zip ---------------------------------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symbolic link
            archive.writestr(info, target)
    return path


@pytest.mark.parametrize(
    "members, links, words",
    [
        ({f"{NAME}/configs/metadata.json": b"{}", "../evil.sh": b"touch x"}, None, "names a file outside its folder"),
        ({f"{NAME}/configs/metadata.json": b"{}", "/tmp/evil.sh": b"x"}, None, "names a file outside its folder"),
        ({f"{NAME}/configs/metadata.json": b"{}"}, {f"{NAME}/models/model.pt": "/etc/passwd"}, "holds a link"),
        ({f"{NAME}/models/huge.bin": bytes(200 * 2**20)}, None, "unpacks"),
        ({"a/x.json": b"{}", "b/y.json": b"{}"}, None, "must hold one bundle folder"),
    ],
    ids=["dot-dot", "absolute", "link", "bomb", "two-folders"],
)
def test_a_malicious_zip_is_refused_before_anything_is_unpacked(members, links, words, scan, tmp_path, capsys):
    archive = _zip(tmp_path / f"{NAME}.zip", members, links)
    _refused(*_predict(archive, scan, tmp_path, capsys), words)
    assert not (tmp_path / "evil.sh").exists() and not list((tmp_path / "cache").rglob("*.json"))


def test_limits_refuse_a_zip_with_too_many_files(tmp_path):
    archive = _zip(tmp_path / "many.zip", {f"{NAME}/f{i}.txt": b"x" for i in range(20)})
    with pytest.raises(InputError, match="more files or bytes than a bundle may hold"):
        extract_zip(archive, tmp_path / "out", Limits(files=10))
    assert not (tmp_path / "out").exists()


# --- the signature ---------------------------------------------------------------------------------------------------


def _key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def test_a_signed_bundle_is_accepted_with_its_key_only(trained_demo, clean, scan, tmp_path, capsys):
    (sender, sender_public), (_, stranger) = _key_pair(tmp_path, "sender"), _key_pair(tmp_path, "stranger")
    signed = export_bundle(trained_demo, tmp_path / "signed" / NAME, torchscript=False, sign_key=sender)
    assert (signed.folder / "manifest.sig").is_file()
    status, _ = _predict(signed.folder, scan, tmp_path, capsys, "--trusted_key", str(sender_public))
    assert status == 0
    _refused(*_predict(signed.folder, scan, tmp_path, capsys, "--trusted_key", str(stranger)), "does not match")
    _refused(*_predict(clean.folder, scan, tmp_path, capsys, "--trusted_key", str(sender_public)), "is not signed")
    # a bundle changed and its manifest rewritten by someone without the key: the signature no longer fits
    changed = _copy(signed, tmp_path)
    (changed / "docs" / "README.md").write_text("changed")
    write_manifest(changed)
    _refused(*_predict(changed, scan, tmp_path, capsys, "--trusted_key", str(sender_public)), "does not match")


def test_the_safe_path_equals_the_run(clean, trained_demo, scan, tmp_path):
    quiet = {"echo": lambda *_: None, "cache_dir": tmp_path / "cache"}
    (by_bundle,) = predict_scans([scan], clean.folder, out=tmp_path / "bundle", **quiet)
    (by_run,) = predict_scans([scan], trained_demo, out=tmp_path / "run", **quiet)
    assert by_bundle.probabilities == pytest.approx(by_run.probabilities, abs=1e-6)


def test_payload_class_really_runs_when_unpickled(tmp_path):
    """The corpus's pickle payload is live: unpickling it outside torch's weights_only creates the sentinel."""
    sentinel = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(sentinel)))
    assert sentinel.exists()
