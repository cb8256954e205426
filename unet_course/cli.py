"""The command line, ``python -m unet_course`` (or ``unet-course``): the parser, the dispatch
to ``unet_course.commands`` (each module's ``add(subparsers)``) and each way a command ends:
a user's mistake one line and exit code 2, Ctrl-C 130, a bug one line and exit code 1 (its
traceback with ``UNET_COURSE_DEBUG=1``)."""

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
USER_ERRORS = (UsageError, ValueError, TypeError, FileNotFoundError, NotADirectoryError,
               PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The ``unet-course`` parser with one subparser per module of ``SUBCOMMANDS``."""
    parser = Parser(prog=PROG, description="Train and evaluate U-Nets for nuclei segmentation.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=Parser)
    for command in SUBCOMMANDS:
        command.add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with Ctrl-C recorded (``interrupts``); return the exit code (0 ok,
    2 user error, 1 internal error or an image that failed, 130 Ctrl-C)."""
    with interrupts.recording():
        try:
            args = build_parser().parse_args(argv)
            interrupts.check()
            code = args.func(args)
            if interrupts.pending():  # a Ctrl-C after the last stage still ends with 130
                return _fail("interrupted (Ctrl-C) as the command ended: what it reported "
                             "above is complete", EXIT_INTERRUPT)
            return code
        except KeyboardInterrupt as err:  # the commands say what they kept
            return _fail(f"interrupted (Ctrl-C): {_one_line(err, NOTHING)}", EXIT_INTERRUPT)
        except Exception as err:
            from unet_course.files import user_os_error

            if isinstance(err, USER_ERRORS) or isinstance(err, OSError) and user_os_error(err):
                return _fail(f"error: {_one_line(err)}", EXIT_USAGE)  # a full disk, say
            if os.environ.get("UNET_COURSE_DEBUG"):
                raise
            return _fail(f"internal error: {type(err).__name__}: {_one_line(err)} (set "
                         "UNET_COURSE_DEBUG=1 for the traceback)", 1)


def _one_line(err: BaseException, empty: str = "") -> str:
    return " ".join(str(err).split()) or empty or type(err).__name__


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code
