"""``jointnas`` command line. Each subcommand lives in its own module of this package and
exposes ``register(subparsers)``; bad input exits with code 2 and one line on stderr."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from ..errors import UsageError
from ..space import SpaceError

# Subcommand modules, in the order `jointnas --help` lists them.
COMMANDS = ["describe", "train", "coarse", "fine", "report"]


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (what is wrong, and where to look) and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> Parser:
    from .. import __version__

    parser = Parser(prog="jointnas", description="Joint architecture + training-recipe search (FBNetV3-style). "
                    "FLOPs budgets are fvcore's counts of the deployable model: one multiply-add = one flop.")
    parser.add_argument("--version", action="version", version=f"jointnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, SpaceError) as e:
        sys.stderr.write(f"jointnas {args.command}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("jointnas: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`jointnas ... | head`): stop quietly, like other command-line tools.
        # stdout is pointed at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
