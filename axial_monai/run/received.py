"""What a received bundle must pass before anything in it is read: its zip, its manifest and, optionally, its
signature.

A model is shared so that someone else can run it, often on a machine with patient data, so a received bundle is
untrusted input. :func:`open_bundle` is the one way in:

1. a zip is unpacked without following its names out of the target folder (``../``, absolute names, drive
   letters), without links, and within :class:`Limits` (number of files, total size, compression ratio: a zip bomb
   is refused before it is unpacked, and a member that unpacks to more than it declared stops the unpacking);
2. the folder must hold exactly the files of its ``manifest.json`` (written by ``axial-monai export``), each with
   its size and SHA-256, and no link: a changed, missing or extra file is refused, naming it. The folders the
   bundle's own configs write into (``eval/``, ``runs/``) and Python's ``__pycache__`` do not count;
3. with a trusted public key, the manifest must carry a valid Ed25519 signature by its private key
   (``manifest.sig``).

Only then are the weights (``weights_only``), the JSON settings (schema-checked) and the NIfTI volumes read; the
bundle's configs and ``scripts/`` never are (``axial_monai.predict``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InputError, one_line
from ..io import file_digest

__all__ = [
    "MANIFEST",
    "SIGNATURE",
    "Limits",
    "write_manifest",
    "sign_manifest",
    "verify_manifest",
    "extract_zip",
    "open_bundle",
]

logger = logging.getLogger(__name__)

#: the manifest of a bundle (its folder's root): ``{"format", "algorithm", "files": {path: {"sha256", "bytes"}}}``.
MANIFEST = "manifest.json"
#: the detached Ed25519 signature of ``manifest.json`` (raw 64 bytes), when the exporter signed it.
SIGNATURE = "manifest.sig"
#: what is not part of a shared bundle: the output folders of its own configs, and Python's byte-code caches.
_NOT_SHARED = ("eval", "runs")
_CACHE = "__pycache__"


@dataclass(frozen=True)
class Limits:
    """The most a received bundle may hold (defaults fit a paper-scale model with room to spare).

    Attributes:
        files: files in the bundle.
        total_bytes: bytes of all files together, unpacked.
        json_bytes: bytes of one JSON file (settings, configs, manifest): refused before it is read.
        ratio: unpacked/packed size of one zip member (compressed tensors and NIfTI reach about 10).
    """

    files: int = 10_000
    total_bytes: int = 32 * 2**30
    json_bytes: int = 16 * 2**20
    ratio: float = 200.0


def _shared_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(posix path relative to folder, path)`` of every entry that counts as part of the bundle (links included,
    to be refused), sorted."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if relative.parts[0] in _NOT_SHARED or _CACHE in relative.parts or relative.as_posix() == MANIFEST:
            continue
        if relative.as_posix() == SIGNATURE or (path.is_dir() and not path.is_symlink()):
            continue
        yield relative.as_posix(), path


def write_manifest(folder: str | os.PathLike) -> Path:
    """Write ``<folder>/manifest.json``: the size and SHA-256 of every file of the bundle; returns its path."""
    from ..io import write_json

    folder = Path(folder)
    files = {name: {"sha256": file_digest(path), "bytes": path.stat().st_size} for name, path in _shared_files(folder)}
    path = folder / MANIFEST
    write_json(path, {"format": 1, "algorithm": "sha256", "files": files}, indent=4)
    return path


def sign_manifest(folder: str | os.PathLike, private_key: str | os.PathLike) -> Path:
    """Sign ``<folder>/manifest.json`` with an Ed25519 private key (PEM file, unencrypted): ``manifest.sig``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(Path(private_key).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{private_key} is not an Ed25519 private key (PEM).")
    folder = Path(folder)
    path = folder / SIGNATURE
    path.write_bytes(key.sign((folder / MANIFEST).read_bytes()))
    return path


def _check_signature(folder: Path, public_key: str | os.PathLike) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(Path(public_key).read_bytes())
    except (OSError, ValueError) as err:
        raise InputError(f"{public_key} cannot be read as a public key (PEM): {one_line(err)}.") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{public_key} is not an Ed25519 public key (PEM).")
    signature = folder / SIGNATURE
    if not signature.is_file():
        raise InputError(f"{folder} is not signed ({SIGNATURE} is missing), and a trusted key was given.")
    try:
        key.verify(signature.read_bytes(), (folder / MANIFEST).read_bytes())
    except InvalidSignature:
        raise InputError(
            f"{folder}: the signature of {MANIFEST} does not match the trusted key {public_key}."
        ) from None


def _read_manifest(folder: Path, limits: Limits) -> dict[str, dict[str, Any]]:
    path = folder / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise InputError(
            f"{folder} has no {MANIFEST}: it was not exported by axial-monai 0.3.0 or later (export it again), or it "
            "lost a file on the way."
        )
    if path.stat().st_size > limits.json_bytes:
        raise InputError(f"{path} is {path.stat().st_size} bytes, over the {limits.json_bytes} of a bundle's JSON.")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        entries = {str(k): {"sha256": str(v["sha256"]), "bytes": int(v["bytes"])} for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"{path} is not a bundle manifest ({one_line(err)}).") from None
    for name in entries:
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or "\\" in name or not parts:
            raise InputError(f"{path} names a file outside the bundle: {name!r}.")
    return entries


def verify_manifest(
    folder: str | os.PathLike, public_key: str | os.PathLike | None = None, limits: Limits = Limits()
) -> None:
    """Check that ``folder`` holds exactly the files of its manifest, unchanged (and, with ``public_key``, that the
    manifest is signed by its private key). Sizes are compared before any file is hashed, and JSON files over the
    limit are refused before they are hashed or read.

    Raises:
        InputError: one line naming the bundle and the first file that is missing, changed, extra or a link.
    """
    folder = Path(folder)
    expected = _read_manifest(folder, limits)
    if public_key is not None:
        _check_signature(folder, public_key)
    present = dict(_shared_files(folder))
    for name, path in present.items():
        if path.is_symlink():
            raise InputError(f"{folder}: {name} is a link; a bundle holds plain files only.")
        if name not in expected:
            raise InputError(f"{folder}: {name} is not in {MANIFEST} (a file added after the export).")
    if len(expected) > limits.files or sum(e["bytes"] for e in expected.values()) > limits.total_bytes:
        raise InputError(f"{folder}: {MANIFEST} lists more files or bytes than a bundle may hold ({limits}).")
    for name, entry in expected.items():
        path = present.get(name)
        if path is None:
            raise InputError(f"{folder}: {name} is missing (listed in {MANIFEST}).")
        size = path.stat().st_size
        if name.endswith(".json") and size > limits.json_bytes:
            raise InputError(f"{folder}: {name} is {size} bytes, over the {limits.json_bytes} of a bundle's JSON.")
        if size != entry["bytes"] or file_digest(path) != entry["sha256"]:
            raise InputError(f"{folder}: {name} was changed after the export (its SHA-256 is not the manifest's).")


def _member_name(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
    name = info.filename
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ":" in name.split("/")[0] or "\\" in name or ".." in parts:
        raise InputError(f"{archive} names a file outside its folder: {name!r}; refused, nothing unpacked.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(f"{archive} holds a link ({name}); a bundle holds plain files only. Nothing unpacked.")
    return PurePosixPath(name)


def extract_zip(archive: str | os.PathLike, target: str | os.PathLike, limits: Limits = Limits()) -> Path:
    """Unpack a bundle's zip into ``target`` (written whole in a temporary folder beside it, then renamed), within
    ``limits``; returns the bundle folder (the zip's one top folder).

    Raises:
        InputError: for a name that leaves the folder, a link, more than one top folder, or a zip over the limits
            (declared sizes, or a member that unpacks to more than it declared); nothing is left behind.
    """
    archive, target = Path(archive), Path(target)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{archive} cannot be read as a zip ({one_line(err)}).") from None
    names = [_member_name(info, archive) for info in members]
    files = [(info, name) for info, name in zip(members, names, strict=True) if not info.is_dir()]
    if len(files) > limits.files or sum(info.file_size for info, _ in files) > limits.total_bytes:
        raise InputError(f"{archive} unpacks to more files or bytes than a bundle may hold ({limits}); refused.")
    for info, name in files:
        if info.file_size > max(info.compress_size, 1) * limits.ratio and info.file_size > 2**20:
            raise InputError(
                f"{archive}: {name} unpacks {info.file_size / max(info.compress_size, 1):.0f}-fold; refused."
            )
    tops = {name.parts[0] for name in names}
    if len(tops) != 1 or any(len(name.parts) < 2 for _, name in files):
        raise InputError(f"{archive} must hold one bundle folder, not {sorted(tops)[:5]}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info, name in files:
                destination = work.joinpath(*name.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with zipped.open(info) as source, open(destination, "wb") as out:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        written += len(block)
                        if written > info.file_size:
                            raise InputError(f"{archive}: {name} unpacks to more than it declares; refused.")
                        out.write(block)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target / next(iter(tops))


def open_bundle(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    public_key: str | os.PathLike | None = None,
    limits: Limits = Limits(),
) -> Path:
    """The folder of a received bundle (a folder, or its zip unpacked into ``<cache_dir>/received/``), after its
    manifest (and, with ``public_key``, its signature) passed: see the module docstring.

    Raises:
        InputError: one line naming the bundle and what is wrong.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        key = file_digest(path)[:16]
        path = extract_zip(path, Path(cache_dir) / "received" / key, limits)
    verify_manifest(path, public_key, limits)
    return path
