"""Subcommands of the history database: ``db upgrade`` and ``db status``."""

from __future__ import annotations

import argparse
from typing import Any

from services.contract.settings import load_settings


def register(sub: Any) -> None:
    """Add ``db`` with ``upgrade`` and ``status``."""
    p = sub.add_parser("db", help="the history store's schema: upgrade it, or show its revision")
    actions = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    store_help = "history store URL (default PACESETTER_STORE_URL)"
    up = actions.add_parser("upgrade", help="apply the schema migrations the database lacks")
    up.add_argument("--store", help=store_help)
    up.set_defaults(handler=cmd_upgrade)
    st = actions.add_parser("status", help="the database's schema revision and this program's")
    st.add_argument("--store", help=store_help)
    st.set_defaults(handler=cmd_status)


def _engine(args: argparse.Namespace) -> tuple[str, Any]:
    from services.history.database import create_engine

    url = args.store or load_settings().store_url
    return url, create_engine(url)


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Upgrade the schema to this program's revision."""
    import sqlalchemy as sa

    from services.history.database import StoreUnavailable, brief, safe_url, upgrade

    url, engine = _engine(args)
    try:
        before, after = upgrade(engine)
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(f"history store {safe_url(url)} unreachable: {brief(exc)}") \
            from None
    finally:
        engine.dispose()
    if before == after:
        print(f"{safe_url(url)}: schema already at revision {after}")
    else:
        print(f"{safe_url(url)}: schema upgraded from revision {before or 'none'} to {after}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print the revisions; exit 1 when the schema is behind."""
    import sqlalchemy as sa

    from services.history.database import (
        StoreUnavailable,
        brief,
        current_revision,
        head_revision,
        safe_url,
    )

    url, engine = _engine(args)
    try:
        found = current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(f"history store {safe_url(url)} unreachable: {brief(exc)}") \
            from None
    finally:
        engine.dispose()
    head = head_revision()
    state = "up to date" if found == head else "behind: run `pacesetter db upgrade`"
    print(f"{safe_url(url)}: schema revision {found or 'none'}, this program's {head} ({state})")
    return 0 if found == head else 1
