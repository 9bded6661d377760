"""The one exception tree of linkage.

Every error the library raises on purpose is a ``LinkageError``; anything else escaping is a bug.
Messages name the file, row, field, key or peer at fault and never contain a raw identifier or a
secret. Each class carries the gRPC status name a server reports it under (the core does not
import grpc: the protocol layer maps the name).

    LinkageError                 catch this to handle any expected failure
    ├── InputError               a data file is unusable: missing column, duplicate id, bad encoding
    ├── SchemaError              a schema is invalid; the message names the offending key
    ├── SecretError              a linkage secret file is missing, malformed or would be overwritten
    ├── EncodingsError           an encodings file is unreadable or was made under another schema
    ├── ConfigError              a node or coordinator config is missing or malformed (names the key)
    ├── PkiError                 a CA, certificate or key is missing, malformed, expired or foreign
    ├── CeremonyError            a key card or wrapped secret is forged, altered or not meant for us
    ├── TransferError            a stream between parties arrived incomplete, altered or malformed
    ├── RequestError             a request to a server is malformed or beyond its limits
    ├── JobError                 a job cannot run: unknown agency, failed transfer, mismatched schemas
    ├── IndexUnavailableError    no intake index to query: none kept by policy, none built, or expired
    ├── QueryLimitError          an agency asked about more records than its hourly query limit allows
    ├── ServerError              a server cannot start (address in use)
    ├── MissingExtraError        an optional dependency is not installed (names the extra to install)
    └── AuditError               an audit log cannot be read as one
        ├── AuditKeyError        an audit key is missing, malformed or does not match the log
        └── AuditEntryError      an entry was refused: a detail is not fit for the log

The CLI turns a ``LinkageError`` into one line on stderr and exit status 1; a server turns it into
its gRPC status with the same message.
"""

from __future__ import annotations

__all__ = [
    "AuditEntryError",
    "AuditError",
    "AuditKeyError",
    "CeremonyError",
    "ConfigError",
    "EncodingsError",
    "IndexUnavailableError",
    "InputError",
    "JobError",
    "MissingExtraError",
    "LinkageError",
    "PkiError",
    "QueryLimitError",
    "RequestError",
    "SchemaError",
    "SecretError",
    "ServerError",
    "TransferError",
]


class LinkageError(Exception):
    """Base class: an expected failure with a message fit to show a user."""

    grpc_status = "INTERNAL"


class InputError(LinkageError):
    """A data file cannot be used as a whole (a value that is merely unusable is a reject instead)."""

    grpc_status = "INVALID_ARGUMENT"


class SchemaError(LinkageError):
    """A schema file or schema value is invalid."""

    grpc_status = "INVALID_ARGUMENT"


class SecretError(LinkageError):
    """A linkage secret cannot be read, is malformed, or writing it would destroy another."""

    grpc_status = "FAILED_PRECONDITION"


class EncodingsError(LinkageError):
    """An encodings file is unreadable, or does not match the schema or project expected."""

    grpc_status = "FAILED_PRECONDITION"


class ConfigError(LinkageError):
    """A node or coordinator config file is missing, malformed or inconsistent."""

    grpc_status = "FAILED_PRECONDITION"


class PkiError(LinkageError):
    """A CA, certificate or key is missing, malformed, mismatched, expired, or would be overwritten."""

    grpc_status = "FAILED_PRECONDITION"


class CeremonyError(LinkageError):
    """A key card or wrapped secret is malformed, forged, altered, expired or not meant for this agency."""

    grpc_status = "FAILED_PRECONDITION"


class TransferError(LinkageError):
    """A stream arrived incomplete, altered or malformed."""

    grpc_status = "DATA_LOSS"


class RequestError(LinkageError):
    """A request to a server is malformed or beyond its limits (an unknown scoring, an overlong job id)."""

    grpc_status = "INVALID_ARGUMENT"


class JobError(LinkageError):
    """A job could not run: an unknown or unreachable agency, mismatched schemas, a failed transfer."""

    grpc_status = "FAILED_PRECONDITION"


class IndexUnavailableError(LinkageError):
    """No intake index can answer: the project keeps none, no job has built one yet, or it expired."""

    grpc_status = "FAILED_PRECONDITION"


class QueryLimitError(LinkageError):
    """An agency's intake queries are past the project's hourly limit; the call is refused and logged."""

    grpc_status = "RESOURCE_EXHAUSTED"


class ServerError(LinkageError):
    """A server could not start (address in use, bad TLS material)."""

    grpc_status = "UNAVAILABLE"


class MissingExtraError(LinkageError):
    """A command needs an optional dependency that is not installed; the message names the extra."""

    grpc_status = "FAILED_PRECONDITION"


class AuditError(LinkageError):
    """An audit log cannot be read as one: missing, not an audit log, or a row that does not parse. A log that reads but fails verification is not an error: ``verify`` returns a report."""

    grpc_status = "DATA_LOSS"


class AuditKeyError(AuditError):
    """An audit signing or verifying key is missing, malformed, would be overwritten, or does not match the log it is meant to extend."""

    grpc_status = "FAILED_PRECONDITION"


class AuditEntryError(AuditError):
    """An entry was refused before it was written: a field or detail is not fit for the log."""

    grpc_status = "INVALID_ARGUMENT"
