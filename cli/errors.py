"""How ``autoforge`` fails: one line on stderr, and an exit code that says what went wrong.

Every command fails the same way: it raises, and :func:`run_app` turns the exception into
``error: <what went wrong>`` on stderr (never a traceback) and one of these exit codes.
Bad input is a ``typer.BadParameter`` raised where the input is parsed, so the message
names the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import typer

from core.errors import AutoforgeError, ConfigurationError


class ExitCode(IntEnum):
    """The exit codes of ``autoforge`` (the README lists them too)."""

    #: Done; for ``jobs wait`` and ``enqueue --wait``: the job succeeded.
    OK = 0
    #: The command could not do its work: the API answered with an error or could not be
    #: reached, a backup is missing or damaged, the database refused, ...
    FAILED = 1
    #: Bad usage: an unknown option, a bad argument or input file, invalid settings.
    USAGE = 2
    #: ``jobs wait`` / ``enqueue --wait``: the job ended ``failed``.
    JOB_FAILED = 3
    #: ``jobs wait`` / ``enqueue --wait``: the job ended ``cancelled``.
    JOB_CANCELLED = 4
    #: ``jobs wait`` / ``enqueue --wait``: ``--timeout`` passed while the job still ran.
    WAIT_TIMED_OUT = 5


class CommandFailed(Exception):
    """The command could not do its work; the message says why, in one line."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _say(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def run_app(app: typer.Typer, args: Sequence[str] | None = None) -> int:
    """Run ``app`` on ``args`` (default: the command line); the exit code.

    Click's own usage errors are printed the same way as ours, as one line, instead of
    Typer's framed panel.
    """
    try:
        result = app(args=args, prog_name="autoforge", standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors and ours (BadParameter)
        # A group called without a command has printed its help already (Typer's own
        # handler recognises this error by name too: the class is not public).
        if type(exc).__name__ != "NoArgsIsHelpError":
            _say(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        _say("aborted")
        return ExitCode.FAILED
    except ConfigurationError as exc:
        _say(str(exc))
        return ExitCode.USAGE
    except CommandFailed as exc:
        _say(str(exc))
        return exc.exit_code
    except AutoforgeError as exc:
        _say(f"{type(exc).__name__}: {exc}")
        return ExitCode.FAILED
    # typer.Exit(code) comes back as its code; a command that returns normally as None.
    return result if isinstance(result, int) else ExitCode.OK
