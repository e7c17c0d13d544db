"""A compact, persistent cache of decoded and normalised volumes: each scan is decoded once, ever.

Decoding and normalising a 1 mm NIfTI costs about a second of CPU; the network reads a few megabytes. The
:class:`VolumeCacheDataset` runs the deterministic loading chain once per scan, crops the result to its non-zero
box and stores it in a compact dtype (``uint8`` by default: 4 MB instead of 34 MB for a 1 mm brain), either

* ``"disk"`` (default): one pickle-free ``.npy`` array (memory-mapped on read) and one ``.json`` record per scan
  in ``cache_dir``, reused by later epochs, runs and cross-validation folds; RAM stays bounded whatever the cohort
  size because only the items of the batches in flight are in memory; or
* ``"memory"``: the compact arrays in RAM (about ``N x 4 MB`` at 1 mm), for small cohorts; or
* ``"none"``: decode every item on every access, as ``monai.data.Dataset``.

Items come back as the crop placed in the cohort's common box (the union of the scans' boxes on the same grid),
with the box corner, full grid and dequantisation scale, so a batch travels in the compact dtype and
:class:`~axial_monai.engines.PrepareVolumeBatch` restores the full float32 volume on the device. Random
augmentation belongs there too (on the device, every epoch), not in the cached transform.

The cache key of a scan covers its real path, size and modification time, the explicit :func:`cache_key` of the
loading chain (each transform's own ``cache_key()``: keys, orientation, checks, intensity normalisation) and the
storage dtype; the crop is derived
from the data. A changed file or setting gives a new entry; an unreadable or damaged entry is rebuilt with a
warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset, MetaTensor
from monai.transforms import Compose, RandomizableTrait
from tqdm import tqdm

from ..errors import InputError, SettingsError, one_line, refuse_or_drop, root_cause
from ..io import atomic_path, write_text
from ..layout import default_cache_root
from ..transforms.compact import COMPACT_DTYPES, compact_volume

__all__ = [
    "CACHE_MODES",
    "CacheEntryError",
    "VolumeCacheDataset",
    "VolumeStore",
    "box_keys",
    "default_cache_dir",
    "default_cache_root",
    "cache_key",
    "transform_signature",
]

logger = logging.getLogger(__name__)
#: the top-level name of this package (``axial_monai``; another in a bundle's copy of the code)

CACHE_MODES = ("none", "memory", "disk")
#: bumped whenever the stored layout or the meaning of a record changes, so that older entries are rebuilt.
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``<$AXIAL_MONAI_CACHE or ~/.cache/axial_monai>/volumes``: the bundle's default ``cache_dir``."""
    return default_cache_root() / "volumes"


def box_keys(image_key: str = "image") -> tuple[str, str, str]:
    """Names of the item keys a compact item carries next to ``image_key``: box corner, full grid, scale."""
    return f"{image_key}_box_start", f"{image_key}_spatial_shape", f"{image_key}_scale"


class CacheEntryError(RuntimeError):
    """A cache entry that cannot be read back (missing part, damaged array, wrong checksum)."""


def cache_key(transform: Callable | Sequence[Callable]) -> Any:
    """The explicit cache key of a deterministic transform chain: each transform's own ``cache_key()`` (its class
    and every setting that changes its output), a ``Compose`` or list as the list of its members' keys.

    Raises:
        SettingsError: for a transform without ``cache_key()``: its settings are unknown, so a cache keyed without
            them could hand back volumes made with other settings. Give the dataset ``cache="none"``, or give the
            transform a ``cache_key()``.
    """
    if callable(getattr(transform, "cache_key", None)):
        return {"class": f"{type(transform).__module__}.{type(transform).__qualname__}", **transform.cache_key()}
    if isinstance(transform, Compose | list | tuple):
        return [cache_key(t) for t in (transform.transforms if isinstance(transform, Compose) else transform)]
    raise SettingsError(
        f"The cached transform {type(transform).__qualname__} has no cache_key(), so the volume cache cannot tell "
        "which of its settings change the volumes: cache the chain of axial_monai.transforms.load_volume, add a "
        "cache_key() to the transform, or use cache='none'."
    )


def transform_signature(transform: Callable | Sequence[Callable]) -> str:
    """A stable hash (equal across processes) of :func:`cache_key`: chains that differ in any setting (e.g.
    ``intensity="zscore"`` instead of ``"percentile"``, another percentile, grid or brain mask) differ in it."""
    text = json.dumps(cache_key(transform), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _flatten(transform: Callable | Sequence[Callable]) -> Compose:
    compose = transform if isinstance(transform, Compose) else Compose(transform)
    return compose.flatten()


class VolumeStore:
    """Compact volumes on disk, one entry per scan: ``<name>.npy`` (the array) and ``<name>.json`` (its record).

    Arrays are plain ``.npy`` files written and read with ``allow_pickle=False``, and read through a memory map
    that is released as soon as the array is copied, so nothing user-supplied is ever unpickled and reading keeps
    only one entry in memory. Writes go through a temporary file and ``os.replace``: a killed process leaves the
    old entry or the new one. The record is written last and holds a CRC-32 of the array bytes.

    Args:
        root: cache directory (created on first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def paths(self, name: str) -> tuple[Path, Path]:
        return self.root / f"{name}.npy", self.root / f"{name}.json"

    def read_record(self, name: str) -> dict | None:
        """The entry's record, or None if there is none; raises ``CacheEntryError`` if it is unreadable."""
        path = self.paths(name)[1]
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
        except ValueError as err:
            raise CacheEntryError(f"{path} is not valid JSON ({err})") from None
        if not isinstance(record, dict):
            raise CacheEntryError(f"{path} does not hold a record")
        return record

    def read_array(self, name: str, record: Mapping, verify: bool = True) -> np.ndarray:
        """The entry's array, memory-mapped read-only and checked against its record (shape, dtype, and with
        ``verify`` the CRC-32 of its bytes). Copy what you need and drop it: the map is released with it."""
        path = self.paths(name)[0]
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise CacheEntryError(f"{path} cannot be read ({type(err).__name__}: {err})") from None
        if list(array.shape) != list(record.get("shape", [])) or str(array.dtype) != record.get("dtype"):
            raise CacheEntryError(
                f"{path} holds {array.dtype} {list(array.shape)}, its record says "
                f"{record.get('dtype')} {record.get('shape')}"
            )
        if verify and zlib.crc32(array) != record.get("crc32"):
            raise CacheEntryError(f"{path} fails its checksum")
        return array

    def write(self, name: str, array: np.ndarray, record: Mapping) -> dict:
        """Write an entry (array, then record with shape, dtype and CRC-32); returns the full record."""
        self.root.mkdir(parents=True, exist_ok=True)
        npy, meta = self.paths(name)
        array = np.ascontiguousarray(array)
        with atomic_path(npy) as tmp, open(tmp, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        full = {**record, "shape": list(array.shape), "dtype": str(array.dtype), "crc32": zlib.crc32(array.tobytes())}
        write_text(meta, json.dumps(full, indent=1))
        return full


def _source_stat(path: str) -> tuple[str, int, int]:
    """Real path, size and modification time (ns) of a source file."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise ValueError(f"{path}: the image file does not exist.") from None
    return real, int(st.st_size), int(st.st_mtime_ns)


class VolumeCacheDataset(Dataset):
    """A ``monai.data.Dataset`` whose deterministic loading chain runs once per scan and is kept compact.

    Args:
        data: datalist items, each with a file path under ``image_key`` (and e.g. ``label``).
        transform: the deterministic loading chain (e.g. ``axial_monai.transforms.load_volume``); nested
            ``Compose`` objects are flattened. Random transforms are refused: run augmentation after the cache
            (``PrepareVolumeBatch(augmentation=...)``).
        cache: "disk" (default), "memory" or "none" (see the module docstring).
        cache_dir: directory of the disk cache; entries are shared by every dataset and run that use it.
        dtype: storage dtype, "uint8" (default; intensities >= 0, e.g. ``intensity="percentile"``), "float16"
            (e.g. ``"zscore"``) or "float32" (lossless).
        image_key: key of the image path in the items.
        num_workers: threads that decode scans missing from the cache when the dataset is built.
        progress: show a progress bar while building.
        drop_bad: leave out the scans that cannot be loaded (missing, unreadable, refused by a check of the
            loading chain), with one warning each; default: one error that lists them all.

    Items (``cache`` "disk" or "memory"): the datalist item with ``image_key`` replaced by a MetaTensor
    ``(1, bx, by, bz)`` in ``dtype`` (the scan's crop placed in the cohort box, with the full grid's affine and
    ``filename_or_obj`` in its meta) and three more keys (:func:`box_keys`): the box corner ``(3,)``, the full grid
    ``(3,)`` and the scale. With ``cache="none"`` items are what ``transform`` returns.

    Raises:
        ValueError: for a bad setting or a random transform.
        InputError: listing every missing, unreadable or refused scan at once (unless ``drop_bad``).
    """

    def __init__(
        self,
        data: Sequence[Mapping],
        transform: Callable | Sequence[Callable],
        cache: str = "disk",
        cache_dir: str | os.PathLike | None = None,
        dtype: str = "uint8",
        image_key: str = "image",
        num_workers: int = 0,
        progress: bool = True,
        drop_bad: bool = False,
    ) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, not {cache!r}.")
        if dtype not in COMPACT_DTYPES:
            raise ValueError(f"cache_dtype must be one of {sorted(COMPACT_DTYPES)}, not {dtype!r}.")
        if cache == "disk" and not cache_dir:
            raise ValueError("cache='disk' needs a cache_dir.")
        chain, transform = transform, _flatten(transform)
        random = [type(t).__name__ for t in transform.transforms if isinstance(t, RandomizableTrait)]
        if random and cache != "none":
            raise ValueError(
                f"The cached transform must be deterministic, but it contains {random}; apply random augmentation "
                "after the cache (axial_monai.engines.PrepareVolumeBatch(augmentation=...))."
            )
        super().__init__(list(data), transform)
        self.cache, self.dtype, self.image_key = cache, dtype, image_key
        self.num_workers, self.progress, self.drop_bad = max(0, int(num_workers)), progress, bool(drop_bad)
        self.store = VolumeStore(cache_dir) if cache == "disk" else None
        self._arrays: dict[int, np.ndarray] = {}
        self._verified: set[int] = set()
        self._records: list[dict] = []
        self._boxes: dict[tuple[int, ...], tuple[tuple[int, ...], tuple[int, ...]]] = {}
        if cache != "none":
            self.signature = transform_signature(chain)
            self._names = [self._entry_name(i) for i in range(len(self.data))]
            self._build()

    # ---- building ------------------------------------------------------------------------------------------
    def _source(self, index: int) -> str:
        item = self.data[index]
        if self.image_key not in item:
            raise ValueError(f"Item {index} of the datalist has no {self.image_key!r} key: {dict(item)}.")
        return str(item[self.image_key])

    def _entry_name(self, index: int) -> str:
        # one entry per (file, settings, dtype): a changed file overwrites its entry, other settings coexist
        path = os.path.realpath(self._source(index))
        return hashlib.sha256(f"{FORMAT_VERSION}|{path}|{self.signature}|{self.dtype}".encode()).hexdigest()[:40]

    def _expected(self, index: int) -> dict:
        real, size, mtime_ns = _source_stat(self._source(index))
        return {
            "format": FORMAT_VERSION,
            "source": real,
            "size": size,
            "mtime_ns": mtime_ns,
            "signature": self.signature,
            "storage": self.dtype,
        }

    def _decode(self, index: int) -> tuple[np.ndarray, dict]:
        """Run the loading chain on one scan and compact it: ``(array, record)``."""
        expected = self._expected(index)
        source = self._source(index)
        try:
            image = self.transform(dict(self.data[index]))[self.image_key]
            array, start, scale = compact_volume(image, self.dtype, name=source)
        except Exception as err:
            cause = root_cause(err)  # MONAI's Compose wraps a transform's error in a RuntimeError
            message = " ".join(str(cause).split()) if source in str(cause) else f"{source}: {one_line(cause)}"
            raise ValueError(f"Cannot cache {message}") from None
        affine = image.affine if isinstance(image, MetaTensor) else torch.eye(4)
        record = {
            **expected,
            "start": list(start),
            "spatial_shape": [int(s) for s in image.shape[1:]],
            "scale": float(scale),
            "affine": np.asarray(affine, dtype=np.float64).tolist(),
        }
        return array, record

    def _make(self, index: int) -> dict:
        array, record = self._decode(index)
        if self.store is not None:
            return self.store.write(self._names[index], array, record)
        self._arrays[index] = array
        return {**record, "shape": list(array.shape), "dtype": str(array.dtype)}

    def _valid_record(self, index: int, expected: dict) -> dict | None:
        """The stored record of an item if it is current; None if missing, stale or unreadable (warned)."""
        if self.store is None:
            return None
        try:
            record = self.store.read_record(self._names[index])
        except CacheEntryError as err:
            warnings.warn(f"Cache entry for {self._source(index)} is damaged ({err}); rebuilding it.", stacklevel=2)
            return None
        if record is None or any(record.get(k) != v for k, v in expected.items()):
            return None
        return record

    def _try_make(self, index: int) -> dict | ValueError:
        try:
            return self._make(index)
        except ValueError as err:  # a missing, unreadable or unusable scan: collected, reported together
            return err

    def _build(self) -> None:
        n = len(self.data)
        failed: dict[int, str] = {}
        records: list[dict | None] = []
        for i in range(n):
            try:
                records.append(self._valid_record(i, self._expected(i)))
            except ValueError as err:  # the file does not exist
                records.append(None)
                failed[i] = str(err)
        todo = [i for i in range(n) if records[i] is None and i not in failed]
        rank, world = _rank_and_world() if self.store is not None else (0, 1)
        mine = todo[rank::world]
        if mine:
            logger.info(f"Caching {len(mine)} of {n} scans ({self.cache}, {self.dtype}).")
            with ThreadPoolExecutor(max(1, self.num_workers)) as pool:
                made = pool.map(self._try_make, mine)
                for i, record in zip(mine, tqdm(made, total=len(mine), desc="cache", disable=not self.progress)):
                    if isinstance(record, ValueError):
                        failed[i] = str(record)
                    else:
                        records[i] = record
        if world > 1:
            torch.distributed.barrier()  # the other ranks' entries are on disk now
            for i in todo:
                if records[i] is None and i not in failed:
                    record = self._valid_record(i, self._expected(i)) or self._try_make(i)
                    if isinstance(record, ValueError):
                        failed[i] = str(record)
                    else:
                        records[i] = record
        if failed:
            self._drop_failed(failed, records)
        self._records = [r for r in records if r is not None]
        self._boxes = {}
        for r in self._records:
            grid, start = tuple(r["spatial_shape"]), np.asarray(r["start"])
            stop = start + np.asarray(r["shape"][1:])
            lo, hi = self._boxes.get(grid, (start, stop))
            self._boxes[grid] = (tuple(np.minimum(lo, start)), tuple(np.maximum(hi, stop)))

    def _drop_failed(self, failed: Mapping[int, str], records: list[dict | None]) -> None:
        """Raise one error listing every scan that could not be cached, or (``drop_bad``) leave them out."""
        lines = [failed[i] for i in sorted(failed)]
        refuse_or_drop(lines, len(self.data), "scans to cache", self.drop_bad)
        keep = [i for i in range(len(self.data)) if i not in failed]
        if not keep:
            raise InputError(f"None of the {len(self.data)} scans can be used: {'; '.join(lines)}.")
        self.data = [self.data[i] for i in keep]
        self._names = [self._names[i] for i in keep]
        self._arrays = {new: self._arrays[old] for new, old in enumerate(keep) if old in self._arrays}
        records[:] = [records[i] for i in keep]

    # ---- reading -------------------------------------------------------------------------------------------
    def _array(self, index: int) -> tuple[np.ndarray, dict]:
        """The compact array (in RAM, or memory-mapped from disk) and the record of item ``index``."""
        record = self._records[index]
        if self.store is None:
            return self._arrays[index], record
        try:
            # the checksum is read once per entry and dataset: damage shows on the first epoch of every run
            array = self.store.read_array(self._names[index], record, verify=index not in self._verified)
            self._verified.add(index)
            return array, record
        except CacheEntryError as err:
            warnings.warn(f"Cache entry for {self._source(index)} is damaged ({err}); rebuilding it.", stacklevel=2)
        fresh = self._make(index)
        if fresh["start"] != record["start"] or fresh["shape"] != record["shape"]:
            raise RuntimeError(f"{self._source(index)} changed while the run was using it; restart the run.")
        self._records[index] = fresh
        return self.store.read_array(self._names[index], fresh), fresh

    def _transform(self, index: int) -> dict[Hashable, Any]:
        if self.cache == "none":
            return super()._transform(index)
        array, record = self._array(index)
        grid = tuple(record["spatial_shape"])
        lo, hi = self._boxes[grid]
        box = np.zeros((array.shape[0], *(b - a for a, b in zip(lo, hi))), dtype=array.dtype)
        offset = [s - a for s, a in zip(record["start"], lo)]
        box[(slice(None), *(slice(o, o + c) for o, c in zip(offset, array.shape[1:])))] = array
        del array  # releases the memory map
        meta = {"filename_or_obj": self._source(index), "spatial_shape": np.asarray(grid)}
        image = MetaTensor(torch.from_numpy(box), affine=torch.as_tensor(record["affine"]), meta=meta)
        item = dict(self.data[index])
        start_key, shape_key, scale_key = box_keys(self.image_key)
        item.update(
            {
                self.image_key: image,
                start_key: np.asarray(lo, dtype=np.int64),
                shape_key: np.asarray(grid, dtype=np.int64),
                scale_key: np.float32(record["scale"]),
            }
        )
        return item

    def cache_bytes(self) -> int:
        """Bytes of compact arrays held by this dataset (on disk or in RAM)."""
        return int(sum(np.prod(r["shape"]) * np.dtype(r["dtype"]).itemsize for r in self._records))


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
