"""The mapping file of MAPPING.md: a TOML file validated whole before any row is read."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from services.contract.errors import PacesetterError
from services.contract.events import ROOM_RE

KINDS = ("calls", "incidents", "units")
CALL_TIMES = ("offered", "answered", "abandoned", "callback_requested", "ended")
INCIDENT_TIMES = ("created", "dispatched", "arrived", "closed")
# strptime directives Python documents; anything else is a typo caught at load.
_DIRECTIVES = set("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_DIRECTIVE_RE = re.compile(r"%(.)")


class MappingError(PacesetterError):
    """A mapping file that cannot be used; the message names the file, line and key."""


def _check_format(value: str | None) -> str | None:
    if value is None:
        return None
    if "%" not in value:
        raise ValueError(f"{value!r} has no % directive: write e.g. \"%m/%d/%Y %I:%M:%S %p\"")
    for directive in _DIRECTIVE_RE.findall(value):
        if directive not in _DIRECTIVES:
            raise ValueError(f"%{directive} in {value!r} is not a Python strptime directive "
                             "(see the strptime table: %Y %m %d %H %M %S %p …)")
    if value.endswith("%") and not value.endswith("%%"):
        raise ValueError(f"{value!r} ends with a lone %")
    return value


def _field_spec(value: Any) -> Any:
    # A bare string is a column name: the shortest way to write the common case.
    return {"column": value} if isinstance(value, str) else value


class FieldSpec(BaseModel):
    """One field: a column, joined columns, the first of several fields, or a constant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    columns: list[str] | None = Field(default=None, min_length=1)
    coalesce: list[Annotated[FieldSpec, BeforeValidator(_field_spec)]] | None = Field(
        default=None, min_length=1)
    value: str | int | float | None = None
    map: dict[str, str] | None = None
    default: str | None = None
    null_values: list[str] = Field(default_factory=list)
    format: Annotated[str | None, BeforeValidator(_check_format)] = None
    pseudonymise: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [k for k in ("column", "columns", "coalesce", "value") if getattr(self, k)
                 is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of column, columns, coalesce or value"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    def column_names(self) -> list[str]:
        """Every column this field reads, in order."""
        if self.column is not None:
            return [self.column]
        if self.columns is not None:
            return list(self.columns)
        if self.coalesce is not None:
            return [name for item in self.coalesce for name in item.column_names()]
        return []

    def has_format(self) -> bool:
        """Whether this field, or one it coalesces, carries a time format."""
        return self.format is not None or any(i.has_format() for i in self.coalesce or ())

    def is_pseudonymised(self) -> bool:
        """Whether any column of this field is pseudonymised."""
        return self.pseudonymise or any(i.is_pseudonymised() for i in self.coalesce or ())


Spec = Annotated[FieldSpec, BeforeValidator(_field_spec)]


class Source(BaseModel):
    """How to read the export and which room its rows belong to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["csv", "jsonl"] = "csv"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    timezone: str = "UTC"
    null_values: list[str] = Field(default_factory=lambda: [""])
    room: str | None = None
    room_column: str | None = None
    room_map: dict[str, str] | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/London") from None
        return value

    @field_validator("room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        if value is not None and not ROOM_RE.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits, '-' or '_' "
                             "(e.g. north)")
        return value

    @field_validator("room_map")
    @classmethod
    def _rooms(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for room in (value or {}).values():
            if not ROOM_RE.match(room):
                raise ValueError(f"room {room!r} must be lower-case letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _one_room(self) -> Source:
        if (self.room is None) == (self.room_column is None):
            raise ValueError("give exactly one of room = \"north\" or room_column = \"…\"")
        if self.room_map is not None and self.room_column is None:
            raise ValueError("room_map needs room_column")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The zone of times without an offset."""
        return ZoneInfo(self.timezone)


class Condition(BaseModel):
    """A ``[where]`` condition other than equality."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None

    @model_validator(mode="after")
    def _one(self) -> Condition:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("give exactly one of in = [...] or not_in = [...]")
        return self

    def holds(self, value: str | None) -> bool:
        """Whether a cell (None when empty) passes."""
        if self.in_ is not None:
            return value in self.in_
        return value not in (self.not_in or ())


class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    TIMES: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _formats(self) -> _Kind:
        for name, spec in self.fields().items():
            if name not in self.TIMES and spec.has_format():
                raise ValueError(f"{name}: format applies to times only "
                                 f"({', '.join(self.TIMES)})")
        return self

    def fields(self) -> dict[str, FieldSpec]:
        """The given fields by name."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if getattr(self, name) is not None}


class CallsKind(_Kind):
    """``[calls]``: one row per call."""

    TIMES: ClassVar[tuple[str, ...]] = CALL_TIMES
    id: Spec
    line: Spec
    offered: Spec
    answered: Spec | None = None
    abandoned: Spec | None = None
    callback_requested: Spec | None = None
    ended: Spec | None = None
    caller: Spec | None = None
    reason: Spec | None = None
    outcome: Spec | None = None
    wrap_seconds: Spec | None = None
    handler: Spec | None = None


class IncidentsKind(_Kind):
    """``[incidents]`` (one row per incident) and ``[units]`` (one per resource sent)."""

    TIMES: ClassVar[tuple[str, ...]] = INCIDENT_TIMES
    id: Spec
    created: Spec
    grade: Spec
    dispatched: Spec | None = None
    arrived: Spec | None = None
    closed: Spec | None = None
    call: Spec | None = None
    area: Spec | None = None


class Mapping(BaseModel):
    """A whole mapping file (MAPPING.md, version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    source: Source
    where: dict[str, str | Condition] = Field(default_factory=dict)
    calls: CallsKind | None = None
    incidents: IncidentsKind | None = None
    units: IncidentsKind | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Mapping:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one kind of row: [calls], [incidents] or [units]"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def kind(self) -> str:
        """``calls``, ``incidents`` or ``units``."""
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def rows(self) -> CallsKind | IncidentsKind:
        """The fields of the kind of row."""
        found: CallsKind | IncidentsKind = getattr(self, self.kind)
        return found

    def columns(self) -> list[str]:
        """Every column the mapping reads (room, conditions and fields), without repeats."""
        names: list[str] = []
        if self.source.room_column:
            names.append(self.source.room_column)
        names += list(self.where)
        for spec in self.rows.fields().values():
            names += spec.column_names()
        return list(dict.fromkeys(names))

    def pseudonymised(self) -> bool:
        """Whether any field is pseudonymised (then a caller key is needed)."""
        return any(spec.is_pseudonymised() for spec in self.rows.fields().values())


# -- loading with key and line in every error ---------------------------------------------

_TABLE_RE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY_RE = re.compile(r"""^\s*("((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """``(table, key) -> line`` of every key, and ``(table, "") -> line`` of every header."""
    found: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE_RE.match(line)
        if header:
            table = header.group(1).strip().strip("\"'")
            found.setdefault((table, ""), number)
            continue
        key = _KEY_RE.match(line)
        if key:
            name = next(g for g in key.groups()[1:] if g is not None)
            found.setdefault((table, name), number)
    return found


def _locate(loc: tuple[Any, ...], lines: dict[tuple[str, str], int]) -> int | None:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if not parts:
        return None
    if (parts[0], "") in lines:  # a table: the key's line within it, else the header's
        if len(parts) > 1 and (parts[0], parts[1]) in lines:
            return lines[(parts[0], parts[1])]
        return lines[(parts[0], "")]
    return lines.get(("", parts[0]))


def _describe(error: Any) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown key (check its spelling against MAPPING.md)"
    if kind == "missing":
        return "is required but missing"
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def parse_mapping(text: str, name: str = "mapping") -> Mapping:
    """Validate a mapping's TOML text.

    Raises:
        MappingError: the TOML is malformed or breaks the contract; each problem is given as
            ``NAME line N: key: reason``.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{name}: not valid TOML: {exc}") from None
    if "version" not in data:
        raise MappingError(f"{name} line 1: version: is required; put version = 1 at the top")
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        lines = _key_lines(text)
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if p not in ("str", "Condition", "function-after"))
            key = ".".join(str(p) for p in loc if not isinstance(p, int)) or "(file)"
            if error.get("type") == "missing" and loc:
                key = ".".join(str(p) for p in loc)
            line = _locate(loc, lines)
            where = f"{name} line {line}" if line else name
            problems.append(f"{where}: {key}: {_describe(error)}")
        raise MappingError("\n".join(dict.fromkeys(problems))) from None


def shipped_dir() -> Path | None:
    """The folder of the mappings shipped with Pacesetter, in a checkout or a wheel."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "mappings", here.parents[2] / "pacesetter" / "mappings"):
        if candidate.is_dir():
            return candidate
    return None


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file; a bare name finds a shipped one (``sf-fire-units``).

    Raises:
        MappingError: unreadable, malformed, or against the contract (naming key and line).
    """
    file = Path(path)
    if not file.exists() and not file.parent.name:
        shipped = shipped_dir()
        name = file.name if file.suffix == ".toml" else f"{file.name}.toml"
        if shipped is not None and (shipped / name).is_file():
            file = shipped / name
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read the mapping {path}: {exc.strerror}") from None
    return parse_mapping(text, str(path))
