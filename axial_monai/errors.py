"""The exception types of axial-monai: one per kind of problem.

=========================  ===========================================================================================
raised                     when
=========================  ===========================================================================================
:class:`InputError`        the data given is unusable: a user's file (image, table, atlas, datalist, checkpoint) or
                           one row or array of it. The message names the file or row, says what is wrong and what to
                           do about it.
:class:`SettingsError`     an option (a function or network argument, a bundle setting, a command-line flag) has an
                           invalid value or contradicts another one. The message names the option, states the rule
                           and shows the value.
``FileNotFoundError``      a file or folder that is needed does not exist (always this type, never a ``ValueError``).
``RuntimeError``           the state on disk or of a run does not allow going on (e.g. a finished fold whose split
                           differs from the one computed now).
=========================  ===========================================================================================

Both classes derive from ``ValueError``, so ``except ValueError`` keeps catching them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

__all__ = ["InputError", "SettingsError", "one_line", "refuse_or_drop", "root_cause"]

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """A user's input file, or a row or array of it, is unusable (wrong shape, unreadable, missing column, ...)."""


class SettingsError(ValueError):
    """An option has an invalid value or contradicts another option."""


def one_line(err: BaseException) -> str:
    """``"<type>: <message>"`` of an exception raised by a library, on one line (nibabel, zlib and torch messages
    span several), for the messages of this package that quote it."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def root_cause(err: BaseException) -> BaseException:
    """The first error of a chain: what a wrapper was raised from (``monai.bundle`` re-raises the error of a config
    component as a ``RuntimeError`` naming the component; the user needs the original message)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def refuse_or_drop(
    bad: Sequence[str], total: int, what: str, drop: bool, more: Callable[[], Sequence[str]] | None = None
) -> None:
    """The one rule for unusable items of a batch (training images, datalist items, scans to cache): refuse them all
    in one message that lists each, so a dataset with several bad files costs one run to fix, not one per file; or,
    with ``drop``, leave them out with a warning each.

    Args:
        bad: ``"<file> <problem>"`` per unusable item.
        total: how many items there were.
        what: what the items are, e.g. ``"images of the training split of datalist.json"``.
        drop: leave the bad items out instead of raising (the bundle's ``drop_bad_items``).
        more: when refusing, further problems to list in the same message (e.g. the damaged voxel data of the items
            whose headers were fine, found only by reading them).

    Raises:
        InputError: ``"<n> of the <total> <what> are unusable: ...; fix or remove them, or set drop_bad_items ..."``.
    """
    if bad and not drop:
        listed = [*bad, *(more() if more is not None else ())]
        raise InputError(
            f"{len(listed)} of the {total} {what} are unusable: {'; '.join(listed)}. Fix or remove them (preprocess "
            "all scans to one template: python -m axial_monai.preprocess), or set drop_bad_items to true "
            "(drop_bad=True) to leave them out."
        )
    for line in bad:
        logger.warning(f"Leaving out one of the {what}: {line}.")
