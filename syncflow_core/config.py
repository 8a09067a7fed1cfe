"""`syncflow.yaml` as pydantic models.

Errors name the file, the entity and the field, e.g.
``syncflow.yaml: entity 'orders': business_key_fields: field 'order_no' is not a source column``.
Unknown keys are errors. Secrets never live here: connection URLs that carry credentials are
named by environment variable (``url_env``) and resolved at run time.
"""

from __future__ import annotations

import locale as _locale
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from syncflow_core.errors import ConfigError
from syncflow_core.names import RESERVED_TABLE_PREFIX, check_name, check_table_name

__all__ = [
    "ApiSmithSourceConfig",
    "ConfigError",
    "EntityConfig",
    "FieldMapping",
    "FieldOptions",
    "FileSourceConfig",
    "ParentRef",
    "ScheduleConfig",
    "SourceRef",
    "SqlSourceConfig",
    "StoreConfig",
    "SyncFlowConfig",
    "check_name",
    "check_source_columns",
    "load_config",
    "parse_config",
]

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
def _identifier(value: str, what: str = "identifier") -> str:
    # Entity names become Dagster asset keys and job names: those need plain identifiers.
    if not IDENTIFIER.match(value):
        raise ValueError(f"{what} {value!r} is not a valid identifier ([A-Za-z_][A-Za-z0-9_$]*)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleConfig(_Strict):
    """The background window and how many nights one pass over the entity takes."""

    window_start: time = time(19, 0)
    window_end: time = time(7, 0)
    timezone: str = "UTC"
    days_to_complete: int = Field(7, ge=1, le=366)
    enabled: bool = True
    retry_attempts: int = Field(4, ge=1, le=20)
    """Background runs of one slice that may fail in one night before the pass moves on."""
    retry_backoff_minutes: int = Field(15, ge=1, le=720)
    """Wait after a slice's first failed run in a night; it doubles after each further one."""
    stale_run_grace_minutes: int = Field(30, ge=0, le=720)
    """A background run still in progress this long after its window closed is presumed dead
    (its worker is gone): the schedule marks it failed and relaunches its slice."""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _nonempty(self) -> ScheduleConfig:
        if self.window_start == self.window_end:
            raise ValueError("window_start and window_end are equal: the window would be empty")
        return self


class FieldOptions(_Strict):
    """Per-field normalization options (all optional)."""

    type: str | None = None
    """Declared source type (``NUMBER(12,2)``, ``DATE``, ``VARCHAR2(40)``); overrides reflection."""
    decimal_separator: Literal[".", ","] | None = None
    locale: str | None = None
    """``en_US``-style locale; ``de``/``fr``/``es``/``it``/``nl``/``pt`` imply a decimal comma."""
    date_formats: tuple[str, ...] = ()
    """strptime formats tried after the built-in ones."""
    day_first: bool = False
    timezone: str | None = None
    """IANA zone of naive source datetimes; they are converted to UTC."""
    empty_is_null: bool | None = None
    """Oracle semantics: '' is NULL. Defaults to the entity's setting."""
    epoch_unit: Literal["s", "ms"] | None = None
    trim: bool = True
    """Strip leading/trailing whitespace (Unicode spaces, NBSP, zero-width space, BOM)."""
    newlines: Literal["space", "keep"] = "space"
    """``space``: TAB, LF, VT, FF, CR and NEL become a space; ``keep``: they stay."""
    fix_mojibake: bool = True
    """Repair UTF-8 read as Latin-1/cp1252 (``MÃ¼nchen`` -> ``München``) with ftfy."""
    binary: Literal["hex", "text"] = "hex"
    """Binary columns (BLOB, RAW, BYTEA): ``hex`` = lowercase hex text; ``text`` = the bytes
    decoded as UTF-8 (JSON or XML payloads); bytes that are not UTF-8 are a failed record."""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        if v is not None:
            key = v.replace("-", "_").lower()
            language = key.split("_")[0]
            if key not in _locale.locale_alias and language not in _locale.locale_alias:
                raise ValueError(f"unknown locale {v!r} (use e.g. 'de_DE', 'en_US', 'fr')")
        return v

    @field_validator("date_formats")
    @classmethod
    def _formats(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for fmt in v:
            check_date_format(fmt)
        return v

    def effective_decimal_separator(self) -> str:
        """The decimal separator implied by ``decimal_separator`` or ``locale``."""
        if self.decimal_separator:
            return self.decimal_separator
        if self.locale and self.locale.split("_")[0].split("-")[0].lower() in _COMMA_LOCALES:
            return ","
        return "."


DATE_FORMAT_TOKENS = frozenset("YymdHIMSfpbBaAz%")
"""strptime directives ``date_formats`` may use (``%f``: 1-9 fractional digits, last). Both
Arrow's strptime and Python's (the strict re-check) read these the same way; ``%e``, ``%h``,
``%j`` and ``%Z`` are left out because one of the two ignores or refuses them."""
_DIRECTIVE = re.compile(r"%(.)")


def check_date_format(fmt: str) -> str:
    """Validate one ``date_formats`` entry; ``ValueError`` naming an unknown directive.

    ``%f`` (fractional seconds, up to 9 digits, truncated to microseconds) must end the
    format: the digits it reads run to the end of the value.
    """
    if "%" not in fmt:
        raise ValueError(f"date format {fmt!r} has no % directive")
    for m in _DIRECTIVE.finditer(fmt.replace("%%", "")):
        if m.group(1) not in DATE_FORMAT_TOKENS:
            raise ValueError(
                f"date format {fmt!r}: unknown directive %{m.group(1)} (known: "
                + " ".join(f"%{t}" for t in sorted(DATE_FORMAT_TOKENS)) + ")"
            )
    if fmt.replace("%%", "").endswith("%"):
        raise ValueError(f"date format {fmt!r} ends with a lone %")
    if "%f" in fmt.replace("%%", "") and not fmt.endswith("%f"):
        raise ValueError(f"date format {fmt!r}: %f must be the last directive")
    return fmt


_COMMA_LOCALES = {
    "de",
    "fr",
    "es",
    "it",
    "nl",
    "pt",
    "da",
    "sv",
    "nb",
    "no",
    "fi",
    "pl",
    "cs",
    "ru",
    "tr",
    "el",
    "hu",
    "ro",
    "id",
}


class FieldMapping(_Strict):
    """One declarative field-mapping step (layer 5); applied in order, no ``eval``."""

    op: Literal[
        "rename",
        "cast",
        "default",
        "constant",
        "value_map",
        "drop",
        "upper",
        "lower",
        "concat",
        "substring",
    ]
    field: str
    to: str | None = None
    """rename: new name; cast: arrow type name (int64, float64, string, decimal(p,s), date,
    timestamp, bool); concat: output field."""
    value: Any = None
    """default / constant: the value."""
    mapping: dict[str, Any] | None = None
    """value_map: source value (as text) -> new value."""
    fields: tuple[str, ...] = ()
    """concat: the input fields (``field`` is the output)."""
    separator: str = ""
    start: int = 0
    length: int | None = None

    @model_validator(mode="after")
    def _shape(self) -> FieldMapping:
        check_name(self.field, "field")
        if self.op == "rename":
            if not self.to:
                raise ValueError("rename needs 'to'")
            check_name(self.to, "field")
        if self.op == "cast" and not self.to:
            raise ValueError("cast needs 'to' (an arrow type name)")
        if self.op == "value_map" and self.mapping is None:
            raise ValueError("value_map needs 'mapping'")
        if self.op == "concat" and not self.fields:
            raise ValueError("concat needs 'fields'")
        if self.op in ("default", "constant") and self.value is None:
            raise ValueError(f"{self.op} needs 'value'")
        return self


class ParentRef(_Strict):
    """A parent entity and the child fields that hold its business key (child -> parent)."""

    entity: str
    fields: dict[str, str]
    """child field -> parent business-key field, in the parent's key order."""
    required: bool = True
    """A null child reference means "no parent" (nothing to wait for) unless required."""
    optional: bool = False
    """The child never waits for this parent: it loads with the reference as the source has
    it, and the parent may arrive later. One optional reference in a cycle of parent_refs
    (department.manager -> employees, employee.department -> departments) makes the cycle
    loadable; a cycle of only waiting references is refused."""


class SourceRef(_Strict):
    """Where an entity's rows come from within a configured source."""

    connection: str = "erp"
    table: str | None = None
    """SQL table (``schema.table`` allowed)."""
    path: str | None = None
    """File source: path of a CSV or Parquet file, relative to the source's directory."""
    endpoint: str | None = None
    """APISmith: the entity endpoint path."""

    @field_validator("table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        return None if v is None else check_table_name(v, "table")


class EntityConfig(_Strict):
    """One ERP entity: where it comes from, its identity, its delta strategy and options."""

    name: str
    source: SourceRef
    target_table: str | None = None
    business_key_fields: tuple[str, ...]
    """Output column names (after field mapping), in hash order; composite keys allowed."""
    delta_strategy: Literal["full", "rowversion", "hash"] = "hash"
    rowversion_field: str | None = None
    """Output column holding the source row version (int or text)."""
    parent_refs: tuple[ParentRef, ...] = ()
    fields: dict[str, FieldOptions] = {}
    """Normalization options by *source* column name (layers 1-4 run before mapping)."""
    field_mappings: tuple[FieldMapping, ...] = ()
    empty_is_null: bool = True
    schedule: ScheduleConfig = ScheduleConfig()
    slices: int | None = Field(None, ge=1, le=1000)
    """Number of key-range partitions; defaults to ``schedule.days_to_complete``."""
    chunk_size: int = Field(50_000, ge=1)
    reconcile_deletes_every: int = Field(1, ge=0)
    """``rowversion`` only: every N-th completed pass of a slice ends with a keys-only read of
    the slice's range that soft-deletes the keys gone from the source (0: never; deletes then
    never reach the target). Default: every pass."""
    reject_ratio_limit: float = Field(0.05, ge=0.0, le=1.0)
    """A batch whose rejected share exceeds this fails loudly instead of loading."""
    table_row_count: bool = False
    """Report the whole target table's live rows with every materialization (an exact count
    after each run: a scan of the table, whatever the slice's size; ~0.15 s per 1M rows on a
    warm PostgreSQL table, ~0.5 s right after a load). Off by default, like dagster-dbt's row
    counts: the slices' own counts come with every run anyway."""
    backfill_policy: Literal["single_run", "multi_run"] = "multi_run"
    group: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _identifier(v, "entity name")

    @field_validator("target_table")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is None:
            return None
        check_name(v, "target_table")
        if v.lower().startswith(RESERVED_TABLE_PREFIX):
            raise ValueError(
                f"target_table {v!r}: names starting with '{RESERVED_TABLE_PREFIX}' are "
                "reserved for SyncFlow's own tables"
            )
        return v

    @field_validator("business_key_fields")
    @classmethod
    def _bk(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one business key field is required")
        if len(set(v)) != len(v):
            raise ValueError("business key fields repeat")
        for f in v:
            check_name(f, "field")
        return v

    @model_validator(mode="after")
    def _consistency(self) -> EntityConfig:
        if self.delta_strategy == "rowversion" and not self.rowversion_field:
            raise ValueError("rowversion_field: required when delta_strategy is 'rowversion'")
        if self.rowversion_field is not None:
            check_name(self.rowversion_field, "rowversion_field")
        for name in self.fields:
            check_name(name, "field")
        return self

    @property
    def table_name(self) -> str:
        """The target table's name (defaults to the entity name)."""
        return self.target_table or self.name

    @property
    def slice_count(self) -> int:
        """How many key-range slices (partitions) the entity is split into."""
        return self.slices or self.schedule.days_to_complete

    def field_options(self, name: str) -> FieldOptions:
        """Options of one field, with the entity's ``empty_is_null`` default applied."""
        opts = self.fields.get(name)
        if opts is None:
            return FieldOptions(empty_is_null=self.empty_is_null)
        if opts.empty_is_null is None:
            return opts.model_copy(update={"empty_is_null": self.empty_is_null})
        return opts


class StoreConfig(_Strict):
    """A database: a literal URL for non-secret defaults (a SQLite file) or an env var name."""

    url: str | None = None
    url_env: str | None = None
    db_schema: str | None = Field(None, alias="schema")
    ddl_lock_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    """How long one schema change (ALTER TABLE for a new source column) waits for its table
    lock before giving up and retrying (PostgreSQL ``lock_timeout``): while it waits, new
    readers queue behind it, so keep it short. SQLite's readers never block it (WAL); another
    writer is waited for up to the engine's 30 s busy timeout."""

    @model_validator(mode="after")
    def _one(self) -> StoreConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("exactly one of 'url' or 'url_env' is required")
        if self.url_env is not None and not ENV_NAME.match(self.url_env):
            raise ValueError(f"url_env {self.url_env!r} is not an environment variable name")
        if self.url is not None and re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", self.url):
            raise ValueError("url carries a password: put it in an environment variable (url_env)")
        if self.db_schema is not None:
            check_name(self.db_schema, "schema")
        return self


class SqlSourceConfig(_Strict):
    kind: Literal["sql"] = "sql"
    url: str | None = None
    url_env: str | None = None
    db_schema: str | None = Field(None, alias="schema")

    def store(self) -> StoreConfig:
        """This source's connection as a `StoreConfig`."""
        return StoreConfig(url=self.url, url_env=self.url_env, schema=self.db_schema)

    @model_validator(mode="after")
    def _one(self) -> SqlSourceConfig:
        self.store()  # same rules as a store
        return self


class FileSourceConfig(_Strict):
    kind: Literal["files"]
    directory: str
    csv_delimiter: str = ","
    encoding: str = "utf-8"


class ApiSmithSourceConfig(_Strict):
    kind: Literal["apismith"]
    base_url: str
    jwt_secret_env: str
    """Environment variable holding the HMAC secret that signs short-lived bearer tokens."""
    jwt_issuer: str = "syncflow"
    page_size: int = Field(1000, ge=1)
    timeout_seconds: float = 30.0
    max_retries: int = Field(5, ge=0)

    @field_validator("jwt_secret_env")
    @classmethod
    def _env(cls, v: str) -> str:
        if not ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v


SourceConfig = Annotated[
    SqlSourceConfig | FileSourceConfig | ApiSmithSourceConfig, Field(discriminator="kind")
]


class SyncFlowConfig(_Strict):
    """The whole file."""

    version: Literal[1] = 1
    sources: dict[str, SourceConfig]
    target: StoreConfig
    state: StoreConfig | None = None
    """Defaults to the target database."""
    entities: dict[str, EntityConfig]
    source_file: str = "syncflow.yaml"

    @property
    def state_store(self) -> StoreConfig:
        """Where the state tables live (the target database unless configured)."""
        return self.state or self.target

    def entity(self, name: str) -> EntityConfig:
        """The entity called ``name``; a `ConfigError` naming the file if it is unknown."""
        try:
            return self.entities[name]
        except KeyError:
            raise ConfigError(f"{self.source_file}: no entity {name!r}") from None

    def parents_of(self, name: str) -> tuple[str, ...]:
        """Parent entities ``name`` waits for (self-references and optional references
        excluded): its upstream assets."""
        return tuple(
            dict.fromkeys(
                p.entity
                for p in self.entity(name).parent_refs
                if p.entity != name and not p.optional
            )
        )


def _loc(loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic location into ``entity 'x': field.path``."""
    parts = list(loc)
    prefix = ""
    if len(parts) >= 2 and parts[0] == "entities":
        prefix = f"entity '{parts[1]}': "
        parts = parts[2:]
    # Drop discriminator tags pydantic inserts (e.g. 'sql' in sources.erp.sql.url).
    path = ".".join(str(p) for p in parts if p not in ("sql", "files", "apismith"))
    return prefix + (path or "(top level)")


def parse_config(data: Any, source_file: str = "syncflow.yaml") -> SyncFlowConfig:
    """Validate a parsed YAML document; raise `ConfigError` naming file, entity and field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source_file}: expected a mapping at the top level")
    ents = data.get("entities")
    if isinstance(ents, dict):
        # The mapping key is the entity's name; a name inside must agree.
        fixed = {}
        for key, body in ents.items():
            if isinstance(body, dict):
                if "name" in body and body["name"] != key:
                    raise ConfigError(
                        f"{source_file}: entity '{key}': name: {body['name']!r} "
                        "differs from its key"
                    )
                body = {**body, "name": key}
            fixed[key] = body
        data = {**data, "entities": fixed}
    try:
        cfg = SyncFlowConfig.model_validate({**data, "source_file": source_file})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = _REMOVED_KEYS.get(str(err["loc"][-1]), "unknown key")
            lines.append(f"{source_file}: {_loc(tuple(err['loc']))}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    _cross_checks(cfg)
    return cfg


_REMOVED_KEYS = {
    "first_load_chunk_size": "no longer a setting (remove it): every chunk of a first load "
    "into an empty table now takes the bulk path, indexes built once at the end",
}
"""Keys an older SyncFlow accepted, with what to do instead."""


def _check_target_tables(cfg: SyncFlowConfig) -> None:
    """Two entities writing one table would soft-delete each other's rows."""
    owner: dict[str, str] = {}
    for name, ent in cfg.entities.items():
        if ent.target_table is None and name.lower().startswith(RESERVED_TABLE_PREFIX):
            raise ConfigError(
                f"{cfg.source_file}: entity '{name}': target_table: the default (the entity "
                f"name) starts with '{RESERVED_TABLE_PREFIX}', reserved for SyncFlow's own "
                "tables; set target_table"
            )
        key = ent.table_name.lower()  # SQLite (and SQL Server) names ignore case
        if key in owner:
            other = owner[key]
            raise ConfigError(
                f"{cfg.source_file}: entity '{name}': target_table: {ent.table_name!r} is "
                f"also the target table of entity '{other}' "
                f"({cfg.entities[other].table_name!r}; names equal up to case are one table "
                "on SQLite): give each entity its own table"
            )
        owner[key] = name


def _cross_checks(cfg: SyncFlowConfig) -> None:
    f = cfg.source_file
    _check_target_tables(cfg)
    for name, ent in cfg.entities.items():
        if ent.source.connection not in cfg.sources:
            raise ConfigError(
                f"{f}: entity '{name}': source.connection: no source named "
                f"{ent.source.connection!r} (have: {', '.join(sorted(cfg.sources))})"
            )
        for i, ref in enumerate(ent.parent_refs):
            if ref.entity not in cfg.entities:
                raise ConfigError(
                    f"{f}: entity '{name}': parent_refs.{i}.entity: no entity {ref.entity!r}"
                )
            parent = cfg.entities[ref.entity]
            want = parent.business_key_fields
            got = tuple(ref.fields.values())
            if got != want:
                raise ConfigError(
                    f"{f}: entity '{name}': parent_refs.{i}.fields: must map onto the business "
                    f"key of '{ref.entity}' {list(want)} in order, got {list(got)}"
                )
    _check_acyclic(cfg)
    from syncflow_core.references import check_reference_types  # it reads normalize's plans

    check_reference_types(cfg)


def _check_acyclic(cfg: SyncFlowConfig) -> None:
    """Refuse a cycle of waiting references (optional ones never wait, so they break it)."""
    seen: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if seen.get(n) == 2:
            return
        if seen.get(n) == 1:
            raise ConfigError(
                f"{cfg.source_file}: entity '{n}': parent_refs: cycle "
                f"{' -> '.join([*path, n])}: children in it would wait for each other "
                "forever; mark one reference of the cycle 'optional: true'"
            )
        seen[n] = 1
        for p in cfg.parents_of(n):
            visit(p, [*path, n])
        seen[n] = 2

    for n in cfg.entities:
        visit(n, [])


def load_config(path: str | Path) -> SyncFlowConfig:
    """Read and validate ``syncflow.yaml``."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p.name}: not valid YAML: {exc}") from None
    return parse_config(data, source_file=p.name)


def check_source_columns(
    cfg: SyncFlowConfig, entity: EntityConfig, columns: list[str] | tuple[str, ...]
) -> None:
    """Fail before anything is written if config names a column the source lacks."""
    f = cfg.source_file
    cols = set(columns)
    mapped_out = {m.to for m in entity.field_mappings if m.op == "rename" and m.to}
    mapped_out |= {m.field for m in entity.field_mappings if m.op in ("constant", "concat")}
    for fld in entity.business_key_fields:
        if fld not in cols and fld not in mapped_out:
            raise ConfigError(
                f"{f}: entity '{entity.name}': business_key_fields: field {fld!r} "
                "is not a source column"
            )
    rv = entity.rowversion_field
    if rv and rv not in cols and rv not in mapped_out:
        raise ConfigError(
            f"{f}: entity '{entity.name}': rowversion_field: field "
            f"{entity.rowversion_field!r} is not a source column"
        )
    for fld in entity.fields:
        if fld not in cols:
            raise ConfigError(
                f"{f}: entity '{entity.name}': fields: field {fld!r} is not a source column"
            )
    # Mapping steps read the columns the source has or earlier steps made, in order.
    have = set(cols)
    for i, m in enumerate(entity.field_mappings):
        inputs = m.fields if m.op == "concat" else () if m.op == "constant" else (m.field,)
        where = "fields" if m.op == "concat" else "field"
        for fld in inputs:
            if fld not in have:
                raise ConfigError(
                    f"{f}: entity '{entity.name}': field_mappings.{i}.{where}: field {fld!r} "
                    f"is not a source column (nor made by an earlier mapping)"
                )
        have.update(x for x in (m.field, m.to if m.op == "rename" else None) if x)
    for i, ref in enumerate(entity.parent_refs):
        for child_field in ref.fields:
            if child_field not in cols and child_field not in mapped_out:
                raise ConfigError(
                    f"{f}: entity '{entity.name}': parent_refs.{i}.fields: field "
                    f"{child_field!r} is not a source column"
                )
