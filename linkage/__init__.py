"""linkage: privacy-preserving record linkage with keyed Bloom filters.

The public surface is re-exported here; implementation modules are private (``_schema`` ...).
"""

from ._encodings import Encodings, read_encodings, write_encodings
from ._keys import Secret
from ._link import LinkResult, LinkSettings, link
from ._records import read_records
from ._schema import ENCODING_VERSION, FieldSpec, FilterSpec, HardeningSpec, Schema, kind_for_column
from .bloom import EncodeResult, encode
from .errors import EncodingsError, InputError, LinkageError, SchemaError, SecretError

__version__ = "0.1.0"

__all__ = [
    "ENCODING_VERSION",
    "EncodeResult",
    "Encodings",
    "EncodingsError",
    "FieldSpec",
    "FilterSpec",
    "HardeningSpec",
    "InputError",
    "LinkResult",
    "LinkSettings",
    "LinkageError",
    "Schema",
    "SchemaError",
    "Secret",
    "SecretError",
    "encode",
    "kind_for_column",
    "link",
    "read_encodings",
    "read_records",
    "write_encodings",
]
