"""The ``pacesetter`` command: one subcommand per process or tool (ARCHITECTURE.md, Processes)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from services.contract.errors import PacesetterError
from services.contract.privacy import install_log_redaction

# Each module registers its subcommands; they are imported lazily at parse time so that
# `pacesetter validate` does not pay for importing Faust, FastAPI or Prophet.
COMMAND_MODULES = (
    "pacesetter.commands.core",
    "pacesetter.commands.simulate",
    "pacesetter.commands.stream",
    "pacesetter.commands.serve",
    "pacesetter.commands.plan",
    "pacesetter.commands.db",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pacesetter",
        description="Streaming demand monitor for police control rooms.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pacesetter`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else os.environ.get("PACESETTER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()
    if not args.verbose:
        for noisy in ("kafka", "aiokafka", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except PacesetterError as exc:
        print(f"pacesetter {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
