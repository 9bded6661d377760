"""linkage: privacy-preserving record linkage with keyed Bloom filters.

The public surface is re-exported here; implementation modules are private (``_schema`` ...).
"""

from linkage.bloom._encode import EncodeResult, encode
from linkage.bloom._encodings import Encodings, read_encodings, write_encodings
from linkage.bloom._keys import Secret
from linkage.errors import EncodingsError, InputError, LinkageError, SchemaError, SecretError
from linkage.matching._link import LinkResult, LinkSettings, link
from linkage.records._reading import read_records
from linkage.records._schema import ENCODING_VERSION, FieldSpec, FilterSpec, HardeningSpec, Schema, kind_for_column

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
