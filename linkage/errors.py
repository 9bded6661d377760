"""The one exception tree of linkage.

Every error the library raises on purpose is a ``LinkageError``; anything else escaping is a bug.
Messages name the file, row, field, key or peer at fault and never contain a raw identifier or a
secret. Each class carries the gRPC status name a server reports it under (the core does not
import grpc: the protocol layer maps the name).

    LinkageError                 catch this to handle any expected failure
    ├── InputError               a data file is unusable: missing column, duplicate id, bad encoding
    ├── SchemaError              a schema is invalid; the message names the offending key
    ├── SecretError              a linkage secret file is missing, malformed or would be overwritten
    └── EncodingsError           an encodings file is unreadable or was made under another schema

The CLI turns a ``LinkageError`` into one line on stderr and exit status 1.
"""

from __future__ import annotations

__all__ = ["EncodingsError", "InputError", "LinkageError", "SchemaError", "SecretError"]


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
