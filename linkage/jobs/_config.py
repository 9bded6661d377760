"""Node and coordinator configuration: TOML parsed once into frozen dataclasses.

Relative paths in a config file are relative to the folder holding that file. Errors name the file
and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

from linkage.errors import ConfigError
from linkage.matching._link import Blocking, LinkSettings, Scoring
from linkage.trust._pki import PARTY_NAME, TlsMaterial, load_tls

DISCLOSURES = ("full", "receive-only", "none")
DUPLICATE_POLICIES = ("forbid", "allow")
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_KEEP_RE = re.compile(r"^(\d{1,4})\s*([dh])$")
MAX_INDEX_KEEP = timedelta(days=366)
DEFAULT_PENDING_KEEP = timedelta(days=30)
MAX_PENDING_KEEP = timedelta(days=366)
DEFAULT_QUERIES_PER_HOUR = 600


@dataclass(frozen=True, kw_only=True)
class TlsPaths:
    ca: Path
    cert: Path
    key: Path

    def load(self) -> TlsMaterial:
        """The CA, certificate and key these paths name, checked (``linkage.trust``)."""
        return load_tls(self.ca, self.cert, self.key)


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    agency: str
    listen: str
    data_dir: Path
    input: Path
    id_column: str
    schema: Path
    secret: Path
    tls: TlsPaths
    coordinators: tuple[str, ...]  # names of coordinator certificates this node answers
    exclude_column: str | None = None  # records with a true value here are never encoded (no consent)
    encoding: str = "utf-8"
    chunk_records: int = 4096
    # Results delivered for a job that never finished are discarded at start-up after this long
    # (the coordinator still holds them: `linkage job deliver` delivers them again).
    pending_keep: timedelta = DEFAULT_PENDING_KEEP
    source: Path | None = None  # the config file

    def coordinator(self, name: str | None = None) -> str:
        """The coordinator a call goes to: ``name`` if this node answers it, else the first listed."""
        if name is None:
            return self.coordinators[0]
        if name not in self.coordinators:
            raise ConfigError(
                f"{self.source or 'node config'}: coordinator {name!r} is not in node.coordinators ({', '.join(self.coordinators)})"
            )
        return name


@dataclass(frozen=True, kw_only=True)
class AgencyEntry:
    name: str
    address: str
    disclosure: str = "full"  # full | receive-only | none
    duplicates: str = "forbid"  # allow: several of its records may be one person (share a cluster)


@dataclass(frozen=True, kw_only=True)
class JobDefaults:
    """``[job]``: what a job uses unless its request says otherwise; `link`'s own defaults."""

    threshold: float | None = LinkSettings.threshold
    review_threshold: float | None = LinkSettings.review_threshold
    scoring: Scoring = LinkSettings.scoring
    blocking: Blocking = LinkSettings.blocking


@dataclass(frozen=True, kw_only=True)
class IndexSettings:
    """The intake index: kept ``keep`` after the job that built it (None: never built, queries refused)."""

    keep: timedelta | None = None
    queries_per_hour: int = DEFAULT_QUERIES_PER_HOUR  # records an agency may ask about in any hour

    @property
    def enabled(self) -> bool:
        return self.keep is not None


@dataclass(frozen=True, kw_only=True)
class CoordinatorConfig:
    name: str
    listen: str
    data_dir: Path
    tls: TlsPaths
    agencies: dict[str, AgencyEntry]
    job: JobDefaults = field(default_factory=JobDefaults)
    index: IndexSettings = field(default_factory=IndexSettings)
    retain_encodings: bool = False  # keep encodings in the data folder after a job (default: never written)
    fetch_attempts: int = 3
    delivery_attempts: int = 5
    retry_backoff_s: float = 1.0  # first wait between attempts; doubled each time, at most 30 s
    source: Path | None = None


def _load(path: str | Path) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


class _Reader:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def table(self, key: str, allowed: set[str]) -> dict[str, Any]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: [{key}]: missing table")
        for name in value:
            if name not in allowed and not isinstance(value[name], dict):
                raise ConfigError(f"{self.path}: {key}.{name}: unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def get(self, table: dict[str, Any], where: str, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in table:
            if default is ...:
                raise ConfigError(f"{self.path}: {where}.{key}: missing")
            return default
        value = table[key]
        if isinstance(value, bool) and kind not in (bool, (bool,)):
            raise ConfigError(f"{self.path}: {where}.{key}: wrong type bool")
        if not isinstance(value, kind):
            raise ConfigError(f"{self.path}: {where}.{key}: wrong type {type(value).__name__}")
        return value

    def path_of(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else (self.path.parent / p)

    def name(self, value: str, where: str) -> str:
        if not PARTY_NAME.fullmatch(value):
            raise ConfigError(f"{self.path}: {where}: use lowercase letters, digits, '-' and '_' (not {value!r})")
        return value

    def address(self, value: str, where: str) -> str:
        if not _ADDRESS_RE.match(value):
            raise ConfigError(f"{self.path}: {where}: expected HOST:PORT, not {value!r}")
        return value

    def tls(self) -> TlsPaths:
        t = self.table("tls", {"ca", "cert", "key"})
        return TlsPaths(**{k: self.path_of(self.get(t, "tls", k, str)) for k in ("ca", "cert", "key")})


def load_node_config(path: str | Path, *, listen: str | None = None) -> NodeConfig:
    path, data = _load(path)
    r = _Reader(path, data)
    node = r.table("node", {"agency", "listen", "data_dir", "coordinators", "chunk_records", "pending_keep"})
    d = r.table("data", {"input", "id_column", "schema", "secret", "exclude_column", "encoding"})
    coordinators = r.get(node, "node", "coordinators", list)
    if not coordinators or not all(isinstance(c, str) for c in coordinators):
        raise ConfigError(f"{path}: node.coordinators: list the coordinator names this node answers")
    chunk = r.get(node, "node", "chunk_records", int, 4096)
    if not 1 <= chunk <= 100_000:
        raise ConfigError(f"{path}: node.chunk_records: must be between 1 and 100000")
    return NodeConfig(
        agency=r.name(r.get(node, "node", "agency", str), "node.agency"),
        listen=r.address(listen or r.get(node, "node", "listen", str, "127.0.0.1:0"), "node.listen"),
        data_dir=r.path_of(r.get(node, "node", "data_dir", str, ".")),
        input=r.path_of(r.get(d, "data", "input", str)),
        id_column=r.get(d, "data", "id_column", str),
        schema=r.path_of(r.get(d, "data", "schema", str)),
        secret=r.path_of(r.get(d, "data", "secret", str)),
        tls=r.tls(),
        coordinators=tuple(r.name(c, "node.coordinators") for c in coordinators),
        exclude_column=r.get(d, "data", "exclude_column", str, None),
        encoding=r.get(d, "data", "encoding", str, "utf-8"),
        chunk_records=chunk,
        pending_keep=_duration(r, node, "node", "pending_keep", MAX_PENDING_KEEP) or DEFAULT_PENDING_KEEP,
        source=path,
    )


def load_coordinator_config(path: str | Path, *, listen: str | None = None) -> CoordinatorConfig:
    path, data = _load(path)
    r = _Reader(path, data)
    c = r.table(
        "coordinator",
        {"name", "listen", "data_dir", "retain_encodings", "fetch_attempts", "delivery_attempts", "retry_backoff_s"},
    )
    raw_agencies = data.get("agencies")
    if not isinstance(raw_agencies, dict) or not raw_agencies:
        raise ConfigError(f"{path}: [agencies.NAME]: list at least one agency with its address")
    agencies = {}
    for name, entry in raw_agencies.items():
        where = f"agencies.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {where}: must be a table")
        for key in entry:
            if key not in ("address", "disclosure", "duplicates"):
                raise ConfigError(f"{path}: {where}.{key}: unknown key (allowed: address, disclosure, duplicates)")
        disclosure = r.get(entry, where, "disclosure", str, "full")
        if disclosure not in DISCLOSURES:
            raise ConfigError(f"{path}: {where}.disclosure: one of {', '.join(DISCLOSURES)} (not {disclosure!r})")
        duplicates = r.get(entry, where, "duplicates", str, "forbid")
        if duplicates not in DUPLICATE_POLICIES:
            raise ConfigError(f"{path}: {where}.duplicates: one of {', '.join(DUPLICATE_POLICIES)} (not {duplicates!r})")
        agencies[r.name(name, where)] = AgencyEntry(
            name=name,
            address=r.address(r.get(entry, where, "address", str), f"{where}.address"),
            disclosure=disclosure,
            duplicates=duplicates,
        )
    job = data.get("job", {})
    if not isinstance(job, dict):
        raise ConfigError(f"{path}: [job]: must be a table")
    for key in job:
        if key not in ("threshold", "review_threshold", "scoring", "blocking"):
            raise ConfigError(f"{path}: job.{key}: unknown key (allowed: blocking, review_threshold, scoring, threshold)")
    scoring = r.get(job, "job", "scoring", str, JobDefaults.scoring)
    blocking = r.get(job, "job", "blocking", str, JobDefaults.blocking)
    for key, value, allowed in (("scoring", scoring, get_args(Scoring)), ("blocking", blocking, get_args(Blocking))):
        if value not in allowed:
            raise ConfigError(f"{path}: job.{key}: {', '.join(allowed[:-1])} or {allowed[-1]} (not {value!r})")
    index = _index_settings(r, data.get("index", {}))
    attempts = r.get(c, "coordinator", "fetch_attempts", int, 3)
    if not 1 <= attempts <= 10:
        raise ConfigError(f"{path}: coordinator.fetch_attempts: must be between 1 and 10")
    delivery_attempts = r.get(c, "coordinator", "delivery_attempts", int, 5)
    if not 1 <= delivery_attempts <= 20:
        raise ConfigError(f"{path}: coordinator.delivery_attempts: must be between 1 and 20")
    backoff = float(r.get(c, "coordinator", "retry_backoff_s", (int, float), 1.0))
    if not 0.0 <= backoff <= 60.0:
        raise ConfigError(f"{path}: coordinator.retry_backoff_s: must be between 0 and 60")
    return CoordinatorConfig(
        name=r.name(r.get(c, "coordinator", "name", str), "coordinator.name"),
        listen=r.address(listen or r.get(c, "coordinator", "listen", str, "127.0.0.1:0"), "coordinator.listen"),
        data_dir=r.path_of(r.get(c, "coordinator", "data_dir", str, ".")),
        tls=r.tls(),
        agencies=agencies,
        job=JobDefaults(
            threshold=_optional_float(r, job, "threshold"),
            review_threshold=_optional_float(r, job, "review_threshold"),
            scoring=scoring,
            blocking=blocking,
        ),
        index=index,
        retain_encodings=r.get(c, "coordinator", "retain_encodings", bool, False),
        fetch_attempts=attempts,
        delivery_attempts=delivery_attempts,
        retry_backoff_s=backoff,
        source=path,
    )


def _optional_float(r: _Reader, table: dict[str, Any], key: str) -> float | None:
    value = r.get(table, "job", key, (int, float), None)
    return None if value is None else float(value)


def _duration(r: _Reader, table: dict[str, Any], section: str, key: str, longest: timedelta) -> timedelta | None:
    """``key = "30d"`` (days ``d`` or hours ``h``, from 1h to ``longest``); None where absent."""
    text = r.get(table, section, key, str, None)
    if text is None:
        return None
    found = _KEEP_RE.match(text.strip())
    if not found:
        raise ConfigError(f'{r.path}: {section}.{key}: a number of days or hours, like "30d" or "12h" (not {text!r})')
    amount, unit = int(found.group(1)), found.group(2)
    duration = timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
    if not timedelta(hours=1) <= duration <= longest:
        raise ConfigError(f"{r.path}: {section}.{key}: between 1h and {longest.days}d (not {text!r})")
    return duration


def _index_settings(r: _Reader, table: Any) -> IndexSettings:
    """``[index] keep = "30d"`` (days ``d`` or hours ``h``; absent: no index) and ``queries_per_hour``."""
    if not isinstance(table, dict):
        raise ConfigError(f"{r.path}: [index]: must be a table")
    for key in table:
        if key not in ("keep", "queries_per_hour"):
            raise ConfigError(f"{r.path}: index.{key}: unknown key (allowed: keep, queries_per_hour)")
    keep = _duration(r, table, "index", "keep", MAX_INDEX_KEEP)
    per_hour = r.get(table, "index", "queries_per_hour", int, DEFAULT_QUERIES_PER_HOUR)
    if not 1 <= per_hour <= 1_000_000:
        raise ConfigError(f"{r.path}: index.queries_per_hour: must be between 1 and 1000000")
    return IndexSettings(keep=keep, queries_per_hour=per_hour)
