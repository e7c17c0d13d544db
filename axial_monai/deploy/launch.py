"""The entry point of an application folder (``python APP -i STUDY -o OUT``): it prepares the process for the
Holoscan runtime, then runs :class:`~axial_monai.deploy.app.AxialDeployApp` and turns its outcome into an exit
status."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError

__all__ = ["STACK_BYTES", "main", "raise_stack_limit"]

#: the thread stack Holoscan asks for (its worker threads take the process's soft limit when they start).
STACK_BYTES = 32 * 1024 * 1024


def raise_stack_limit(size: int = STACK_BYTES) -> None:
    """Raise the soft stack limit to ``size`` bytes where the hard limit allows it (threads started later get it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft != resource.RLIM_INFINITY and soft < size and (hard == resource.RLIM_INFINITY or hard >= size):
        resource.setrlimit(resource.RLIMIT_STACK, (size, hard))


def main(argv: Sequence[str] | None = None, bundle: str | os.PathLike | None = None) -> int:
    """Run the bundle of an application folder on ``-i STUDY``, writing into ``-o OUT``.

    Args:
        argv: the command line (default ``sys.argv[1:]``): the SDK's ``-i``, ``-o``, ``-w``, ``-l``, and
            ``--bundle FOLDER`` to run another exported bundle.
        bundle: the bundle folder (default: ``bundle/`` beside the running script).

    Returns:
        0 answered, 1 refused (``result.json`` says why), 2 bad input.
    """
    raise_stack_limit()
    with warnings.catch_warnings():  # Holoscan warns about the limit the process started with
        warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)
        from .app import AxialDeployApp

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--bundle", default=None)
    known, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    folder = Path(known.bundle or bundle or Path(sys.argv[0]).resolve().parent / "bundle")
    try:
        app = AxialDeployApp(folder, rest)
        app.run()
    except InputError as err:
        print(f"axial-monai deploy app: error: {err}", file=sys.stderr)
        return 2
    written = getattr(getattr(app, "results", None), "written", {})
    if "json" not in written:
        print("axial-monai deploy app: error: the application ended without results", file=sys.stderr)
        return 2
    return 0 if json.loads(written["json"].read_text())["answered"] else 1
