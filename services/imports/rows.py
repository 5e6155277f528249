"""Rows of an export (CSV or JSONL, plain or gzipped), streamed with their line numbers."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from services.contract.errors import PacesetterError

# One row: its line number in the export, and its cells (None for a missing one) in the
# order of the columns the mapping asked for.
Row = tuple[int, list[str | None]]


class ExportError(PacesetterError):
    """An export that cannot be read at all (missing file, missing columns, not CSV)."""


class RowProblem(PacesetterError):
    """One line that is not a row at all (JSONL that is not an object): refused, not fatal."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _open_binary(path: Path) -> IO[bytes]:
    try:
        handle: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None
    if handle.read(2) == b"\x1f\x8b":  # gzip's magic, whatever the file is called
        handle.seek(0)
        return gzip.open(handle, "rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def read_rows(path: str | Path, columns: list[str], fmt: str, delimiter: str = ",",
              progress: Any = None) -> Iterator[Row | RowProblem]:
    """Stream the rows of an export, keeping only ``columns``.

    Args:
        path: a CSV or JSONL file, gzipped or not.
        columns: the columns the mapping reads; a CSV without one of them is refused whole.
        fmt: ``csv`` or ``jsonl``.
        delimiter: the CSV delimiter.
        progress: something with ``update(n)`` told of every row read (a tqdm bar).

    Raises:
        ExportError: the file cannot be read, or a CSV lacks a column the mapping needs.
    """
    file = Path(path)
    with _open_binary(file) as raw:
        if fmt == "jsonl":
            yield from _jsonl_rows(raw, columns, progress)
        else:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            yield from _csv_rows(text, file, columns, delimiter, progress)


def _csv_rows(text: IO[str], file: Path, columns: list[str], delimiter: str,
              progress: Any) -> Iterator[Row]:
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ExportError(f"{file}: not a readable CSV file ({exc})") from None
    positions = {name.strip(): index for index, name in reversed(list(enumerate(header)))}
    missing = [c for c in columns if c not in positions]
    if missing:
        shown = ", ".join(repr(h) for h in header[:12]) + (" …" if len(header) > 12 else "")
        raise ExportError(
            f"{file}: the mapping reads column(s) {', '.join(map(repr, missing))} that the "
            f"header does not have (it has {shown}); fix the mapping or the delimiter")
    wanted = [positions[c] for c in columns]
    width = len(header)
    try:
        for cells in reader:
            if progress is not None:
                progress.update(1)
            if not cells:
                continue
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            yield reader.line_num, [cells[i] for i in wanted]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ExportError(f"{file} line {reader.line_num}: unreadable CSV ({exc})") from None


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return orjson.dumps(value).decode()


def _jsonl_rows(raw: IO[bytes], columns: list[str],
                progress: Any) -> Iterator[Row | RowProblem]:
    for number, line in enumerate(raw, start=1):
        if progress is not None:
            progress.update(1)
        line = line.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield RowProblem(number, f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            yield RowProblem(number, "not a JSON object (one object a line)")
            continue
        yield number, [_cell(obj.get(c)) for c in columns]
