"""``jointnas`` command line. Each subcommand lives in its own module of this package and
exposes ``register(subparsers)``; bad input exits with code 2 and one line on stderr."""
from __future__ import annotations

import argparse
import errno
import importlib
import math
import os
import sys
from typing import List, Optional

from .. import __version__
from ..errors import BudgetError, JointnasError
from ..io import FLOPS_NOTE

# Subcommand modules, in the order `jointnas --help` lists them.
COMMANDS = ["describe", "train", "coarse", "fine", "oneshot", "autotrain", "report"]


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (what is wrong, and where to look) and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> Parser:
    parser = Parser(prog="jointnas", description="Joint architecture + training-recipe search (FBNetV3-style). "
                    f"FLOPs budgets are {FLOPS_NOTE}.")
    parser.add_argument("--version", action="version", version=f"jointnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


# argparse types of the numbers the commands' flags take, one message form for all
def number(convert, accept, wanted: str):
    """An argparse type: ``convert(text)`` that ``accept`` approves, else "expected <wanted>, got 'text'"."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return parse


def in_range(convert, low, high, wanted: str):
    """An argparse type: a finite number from ``low`` to ``high`` (NaN is refused)."""
    return number(convert, lambda v: low <= v <= high and v < math.inf, wanted)


def int_at_least(low: int):
    return number(int, lambda v: v >= low, f"a whole number >= {low}")


fraction = number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
positive = number(float, lambda v: 0 < v < math.inf, "a finite number > 0")
non_negative = number(float, lambda v: 0 <= v < math.inf, "a finite number >= 0")  # NaN fails both


def one_thread_unless_asked() -> None:
    """One OpenMP/torch thread per process unless OMP_NUM_THREADS says otherwise: on a shared
    machine torch's default of one thread per core ran 7-16x slower (BENCHMARKS.md, "Threads").
    Set before torch is imported, so that its OpenMP pool starts with that size."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: Optional[List[str]] = None) -> int:
    one_thread_unless_asked()
    try:
        parser = build_parser()  # lists the plug-ins' names: a name two distributions declare is refused here
    except JointnasError as e:
        sys.stderr.write(f"jointnas: error: {one_line(e)}\n")
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except JointnasError as e:
        sys.stderr.write(f"jointnas {args.command}: error: {one_line(e)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("jointnas: interrupted\n")
        return 130
    except BrokenPipeError:  # before OSError, of which it is one
        # The reader went away (`jointnas ... | head`): stop quietly, like other command-line tools.
        # stdout is pointed at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A write the command's own checks did not wrap: still one line, not a traceback.
        sys.stderr.write(f"jointnas {args.command}: error: {e.filename or 'a file'}: {e.strerror}; free some space "
                         "and run the same command again\n")
        return 2


# Flags that set a budget, for the hint a BudgetError gets on the command line.
BUDGET_FLAGS = {"flops": lambda n: f"--budget {math.ceil(n / 1e6)}MFLOPs", "params":
                lambda n: f"--max-params {math.ceil(n / 1e4) / 100:g}M"}


def one_line(e: JointnasError) -> str:
    """The error's message on one line, with the flag to change where the library names a setting."""
    text = " ".join(str(e).split())
    if isinstance(e, BudgetError) and e.needed is not None:
        what, amount = e.needed
        text += f" (use {BUDGET_FLAGS[what](amount)} or more)"
    return text


if __name__ == "__main__":
    sys.exit(main())
