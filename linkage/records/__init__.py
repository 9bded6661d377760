"""Records: the schema, reading input files, normalisation, and the tokens each field yields.

    CSV/Parquet ─▶ ``read_records`` ─▶ ``normalise`` (per field: distinct values and codes; rejects
    reported, never silently dropped) ─▶ ``field_tokens`` (q-grams, date parts, whole values)

Nothing here is keyed: keys and hashing live in ``linkage.bloom``.
"""

from linkage.records._normalise import NormalisedField, map_concurrently, normalise
from linkage.records._reading import read_records
from linkage.records._schema import (
    ENCODING_VERSION,
    FieldSpec,
    FilterSpec,
    HardeningSpec,
    Schema,
    kind_for_column,
)
from linkage.records._tokens import FieldTokens, field_tokens

__all__ = [
    "ENCODING_VERSION",
    "FieldSpec",
    "FieldTokens",
    "FilterSpec",
    "HardeningSpec",
    "NormalisedField",
    "Schema",
    "field_tokens",
    "kind_for_column",
    "map_concurrently",
    "normalise",
    "read_records",
]
