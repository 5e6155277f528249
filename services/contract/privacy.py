"""No raw phone number leaves Pacesetter: redaction of messages, texts and log records.

A caller's number is personal data. Events carry keyed pseudonyms (``k:…``) instead; whatever
is rejected or logged is scrubbed here, whatever its shape: a JSON object or array (fields
redacted where they are), invalid JSON or bytes that are not UTF-8 (phone-like digit runs
scrubbed from the raw text).

What counts as phone-like: a run of digits and separators (spaces, ``-``, ``.``, ``/``,
brackets) holding 9 to 15 digits that starts like a UK or international number (``0…``,
``+…``, ``(0…``, ``44…``), or a bare run of 10 to 15 digits (E.164 without its ``+``). RFC 3339
times, counts and the usual identifiers are left alone.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

REDACTED = "[redacted]"
_REDACTED_BYTES = REDACTED.encode()
#: The whole of a ``caller`` value that is a raw number (events.py refuses such events).
PHONE_RE = re.compile(r"^\+?[\d\s().-]{7,}\Z")

_SEPARATORS = " \t\r\n\u00a0().-/\x00"
# a run of digits and separators around at least one digit (a "+" may lead)
_RUN_TEXT = re.compile(r"\+?[(\s\u00a0]*\d[\d\s\u00a0().\-/\x00]*")
_RUN_BYTES = re.compile(rb"\+?[(\s]*\d[\d\s().\-/\x00]*")
MIN_DIGITS, MAX_DIGITS = 9, 15


def _starts(run: str) -> list[int]:
    """Where a number may start in a run: its start, and each ``+ ( 0`` after a separator."""
    starts = [0]
    for i in range(1, len(run)):
        if run[i] in "+(0" and run[i - 1] in _SEPARATORS and run[i - 1] not in "()":
            starts.append(i)
    return starts


def _phone_span(run: str) -> tuple[int, int] | None:
    """The part of a digit run that is phone-like, or None."""
    end = len(run.rstrip(_SEPARATORS.replace(")", "")))
    for start in _starts(run):
        part = run[start:end]
        digits = sum(c.isdigit() for c in part)
        if digits < MIN_DIGITS:
            continue
        lead = part.lstrip("(\u00a0 \t\r\n\x00")
        if lead.startswith(("+", "0", "44")) or (digits >= 10 and part.isdigit()):
            return start, end
    return None


def _bare_runs(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"(?<!\d)\d{10,15}(?!\d)", text)]


def scrub_text(text: str) -> str:
    """``text`` with every phone-like digit run replaced by ``[redacted]``."""
    if not any(c.isdigit() for c in text):
        return text
    spans = []
    for match in _RUN_TEXT.finditer(text):
        found = _phone_span(match.group())
        if found is not None:
            spans.append((match.start() + found[0], match.start() + found[1]))
        else:  # a long run of several numbers: its bare 10-15 digit parts
            spans += [(match.start() + a, match.start() + b) for a, b in
                      _bare_runs(match.group())]
    if not spans:
        return text
    out, last = [], 0
    for start, end in sorted(spans):
        if start < last:
            continue
        out += [text[last:start], REDACTED]
        last = end
    out.append(text[last:])
    return "".join(out)


def scrub_bytes(raw: bytes) -> bytes:
    """``raw`` (any encoding) with every phone-like run of ASCII digits replaced.

    Digits are single bytes in UTF-8 and Latin encodings; a NUL between them (UTF-16) counts as
    a separator, so a number in UTF-16 is caught too.
    """
    def replace(match: re.Match[bytes]) -> bytes:
        run = match.group().decode("latin-1")
        scrubbed = scrub_text(run)
        return raw[match.start():match.end()] if scrubbed == run else \
            scrubbed.encode("latin-1", "replace")

    return _RUN_BYTES.sub(replace, raw)


def _clean(value: Any, key: str | None = None) -> Any:
    if isinstance(value, str):
        if key == "caller" and PHONE_RE.match(value):
            return REDACTED
        return scrub_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        whole = str(abs(int(value))) if abs(value) < 1e16 else ""
        return REDACTED if MIN_DIGITS + 1 <= len(whole) <= MAX_DIGITS else value
    if isinstance(value, dict):
        return {scrub_text(k): _clean(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def redact(raw: bytes) -> bytes:
    """A message with no raw phone number left in it, whatever its shape.

    JSON (object, array, scalar) is redacted field by field and re-serialised only when
    something was redacted; anything else (invalid JSON, not UTF-8) has its phone-like digit
    runs scrubbed from the raw bytes.
    """
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return scrub_bytes(raw)
    cleaned = _clean(decoded)
    return raw if cleaned == decoded else orjson.dumps(cleaned)


def redact_text(text: str | None) -> str | None:
    """A text (an error, an id) with its phone-like digit runs scrubbed."""
    return None if text is None else scrub_text(text)


_installed = False


def install_log_redaction() -> None:
    """Scrub phone-like digit runs from every log record, whichever handler shows it.

    The record factory renders the message (and any traceback) at creation, so no handler,
    formatter or later configuration can see the raw text. Idempotent.
    """
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: logging reports it itself
            return record
        scrubbed = scrub_text(message)
        if scrubbed != message or record.args:
            record.msg, record.args = scrubbed, ()  # None breaks formatters that expect a tuple
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
