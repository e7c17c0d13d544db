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

__all__ = ["InputError", "SettingsError", "one_line", "root_cause"]


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
