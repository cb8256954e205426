"""The command line, ``python -m unet_course`` (or ``unet-course``): the parser, the dispatch
to ``unet_course.commands`` (each module: ``add(subparsers)`` setting ``func=run``, and
``run(args) -> int``) and how each way a command ends is printed.

A user's mistake is one line on stderr, exit code 2; Ctrl-C (recorded for the whole run by
``interrupts``) exit code 130 and the line the command raised ``KeyboardInterrupt`` with; a
bug one line, exit code 1 (the traceback with ``UNET_COURSE_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from unet_course import interrupts
from unet_course.commands import doctor, evaluate, predict, train
from unet_course.commands.common import Parser, UsageError

PROG = "unet-course"
EXIT_USAGE = 2
EXIT_INTERRUPT = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
NOTHING = "stopped before anything was written; nothing was changed"
SUBCOMMANDS = (train, evaluate, predict, doctor)


def build_parser() -> argparse.ArgumentParser:
    """The ``unet-course`` parser with one subparser per module of ``SUBCOMMANDS``."""
    parser = Parser(prog=PROG, description="Train and evaluate U-Nets for nuclei segmentation.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=Parser)
    for command in SUBCOMMANDS:
        command.add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 user error, 1 internal error or an
    image that failed, 130 Ctrl-C)."""
    with interrupts.recording():
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its subcommand; every way it can end becomes an exit code."""
    try:
        args = build_parser().parse_args(argv)
        interrupts.check()
        code = args.func(args)
        if interrupts.pending():  # a Ctrl-C after the last stage still ends with 130
            return _fail(f"{PROG}: interrupted (Ctrl-C) as the command ended: what it "
                         "reported above is complete", EXIT_INTERRUPT)
        return code
    except UsageError as err:
        return _fail(f"{PROG}: error: {err}", EXIT_USAGE)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        return _fail(f"{PROG}: error: {_one_line(err)}", EXIT_USAGE)
    except KeyboardInterrupt as err:  # the commands say what they kept (interrupted)
        said = " ".join(str(err).split()) or NOTHING
        return _fail(f"{PROG}: interrupted (Ctrl-C): {said}", EXIT_INTERRUPT)
    except OSError as err:  # a full disk, a read-only folder: the user's to fix
        from unet_course.files import user_os_error

        if user_os_error(err):
            return _fail(f"{PROG}: error: {_one_line(err)}", EXIT_USAGE)
        return _internal(err)
    except Exception as err:
        return _internal(err)


def _internal(err: Exception) -> int:
    """A bug: one line, exit code 1; raised again when ``UNET_COURSE_DEBUG`` is set."""
    if os.environ.get("UNET_COURSE_DEBUG"):
        raise err
    return _fail(f"{PROG}: internal error: {type(err).__name__}: {_one_line(err)} "
                 "(set UNET_COURSE_DEBUG=1 for the traceback)", 1)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code
