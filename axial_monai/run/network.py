"""The network of a run: its recipe (class and keyword arguments) and the checks of those arguments.

A checkpoint names its network class as text; :func:`network_class` builds only classes of
:data:`NETWORK_MODULES`, so loading a run never imports or calls anything else.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from .. import networks as own_networks
from ..errors import InputError, SettingsError
from ..geometry import plane_index
from ..input_check import Grid

__all__ = ["NETWORK_MODULES", "checked_class_names", "network_class", "network_recipe", "same_setting", "slice_problem"]

#: a checkpoint may only name network classes from these packages (nothing else is imported or called).
NETWORK_MODULES = ("axial_monai.networks", "monai.networks.nets")
#: the import name of this package: ``axial_monai``, or another where a bundle carries a copy of it.
_OWN_PACKAGE = own_networks.__name__.rpartition(".")[0]


def _plain(value: Any, name: str) -> Any:
    """``value`` as JSON-like plain data (tuples become lists), or a SettingsError naming ``name``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, name) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, name) for k, v in value.items()}
    raise SettingsError(
        f"The network setting {name} is a {type(value).__name__}; run settings hold plain values only "
        "(numbers, strings, lists)."
    )


def network_recipe(network: Any) -> tuple[str, dict[str, Any]]:
    """Class path and keyword arguments of a network recipe: ``functools.partial`` (``_mode_: "callable"``)."""
    if not isinstance(network, functools.partial) or not isinstance(network.func, type):
        raise SettingsError(
            "network must be the network's recipe: a partial of its class with every constructor argument "
            '(in a config: "network_spec" with "_mode_": "callable"), not '
            f"{type(network).__name__}."
        )
    if network.args:
        raise SettingsError(f"network settings must be keyword arguments, not positional {network.args}.")
    module = network.func.__module__
    if module.startswith(_OWN_PACKAGE + ".networks"):  # recorded under its installed name, wherever it ran from
        module = "axial_monai" + module[len(_OWN_PACKAGE) :]
    return f"{module}.{network.func.__qualname__}", {k: _plain(v, k) for k, v in network.keywords.items()}


def network_class(target: str) -> type[nn.Module]:
    """The network class a checkpoint names: one of this package's networks (``axial_monai.networks.<...>.<class>``,
    looked up by name among them) or of ``monai.networks``; anything else is refused, and nothing else is imported."""
    prefix = next((p for p in NETWORK_MODULES if target.startswith(p + ".")), None)
    if prefix is None:
        raise InputError(
            f"The run settings name the network {target!r}; only classes of {list(NETWORK_MODULES)} are built."
        )
    module_name, _, name = target.rpartition(".")
    try:
        if prefix == "axial_monai.networks":
            if name not in own_networks.__all__:
                raise AttributeError(f"axial_monai.networks has no network {name!r}")
            cls = getattr(own_networks, name)
        else:
            cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise InputError(f"The network {target!r} of the run settings cannot be found ({err}).") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InputError(f"{target!r} of the run settings is not a network class.")
    return cls


def slice_problem(grid: Grid, kwargs: Mapping[str, Any]) -> str | None:
    """Why the images of ``grid`` cannot give the network's ``num_slices`` slices along its plane(s), or None."""
    if "plane" not in kwargs or "num_slices" not in kwargs:
        return None
    planes = kwargs["plane"] if isinstance(kwargs["plane"], list | tuple) else [kwargs["plane"]]
    counts = kwargs["num_slices"] if isinstance(kwargs["num_slices"], list | tuple) else [kwargs["num_slices"]]
    counts = counts * len(planes) if len(counts) == 1 else counts
    for plane, count in zip(planes, counts, strict=False):
        depth = grid.shape[plane_index(plane)]
        if int(count) > depth:
            return (
                f"have {depth} voxels along plane {plane!r} ({grid.describe()}), fewer than num_slices={count}: "
                f"lower num_slices to at most {depth} or preprocess to a finer grid"
            )
    return None


def checked_class_names(class_names: Sequence[str], positive_class: int, kwargs: Mapping[str, Any]) -> list[str]:
    """The class names as strings, after checking them against ``positive_class`` and the network's ``num_classes``."""
    names = [str(c) for c in class_names]
    if len(names) < 2 or len(set(names)) != len(names):
        raise SettingsError(f"class_names must be at least two distinct names, not {list(class_names)}.")
    if not 0 <= int(positive_class) < len(names):
        raise SettingsError(f"positive_class must index class_names {names}, not {positive_class}.")
    if "num_classes" in kwargs and kwargs["num_classes"] != len(names):
        raise SettingsError(f"num_classes={kwargs['num_classes']} but class_names has {len(names)}: {names}.")
    return names


def same_setting(name: str, value: Any, expected: Any) -> bool:
    """Whether a given network setting means the run's ``expected`` one (a plane by name or index, one slice count
    for every plane, numbers by value)."""
    if name == "plane":
        return plane_index(value) == plane_index(expected)
    if name == "num_slices" and isinstance(expected, list) and not isinstance(value, list | tuple):
        return [int(value)] * len(expected) == [int(v) for v in expected]
    if isinstance(expected, list) or isinstance(value, list | tuple):
        return [str(v) for v in value] == [str(v) for v in expected] if len(value) == len(expected) else False
    if isinstance(expected, float) or isinstance(value, float):
        return float(value) == float(expected)
    return value == expected
