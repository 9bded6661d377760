"""Keyed Bloom-filter encoding: the project secret and its derived keys, keyed token positions,
filters, hardening, the recipe ``encode`` and the encodings file.

    normalised records ─▶ keyed positions per distinct token ─▶ value filters ─▶ record filters
    (+ group filters, presence) ─▶ hardening ─▶ ``Encodings`` ─▶ Parquet
"""

from linkage.bloom._encode import EncodeResult, encode, token_space
from linkage.bloom._encodings import Encodings, read_encodings, write_encodings
from linkage.bloom._keys import SECRET_BYTES, Secret

__all__ = [
    "EncodeResult",
    "Encodings",
    "SECRET_BYTES",
    "Secret",
    "encode",
    "read_encodings",
    "token_space",
    "write_encodings",
]
