"""Comparisons scoped by keyed match keys: the coordinator compares two records only inside the
scope of a match key they agree on exactly, and nowhere else.

    encode_scoped(records, schema, secret) ─▶ ScopedEncodings ─▶ write/read Parquet
    link_scoped({name: encodings, ...}) ─▶ ScopedLinkResult (pairs, clusters, model, counts)
"""

from linkage.scoped._encode import DEFAULT_TOKEN_CAP, ScopedEncodeResult, encode_scoped, key_frequencies, resolved_keys
from linkage.scoped._encodings import ScopedEncodings, read_scoped_encodings, secret_check, write_scoped_encodings
from linkage.scoped._keys import DEFAULT_MATCH_KEYS, MatchKey, check_keys, field_roles, key_set_fingerprint, nickname_canonicals
from linkage.scoped._link import ScopedLinkResult, ScopedLinkSettings, check_scoped_compatible, fit_scoped_model, link_scoped

__all__ = [
    "DEFAULT_MATCH_KEYS",
    "DEFAULT_TOKEN_CAP",
    "MatchKey",
    "ScopedEncodeResult",
    "ScopedEncodings",
    "ScopedLinkResult",
    "ScopedLinkSettings",
    "check_keys",
    "check_scoped_compatible",
    "encode_scoped",
    "field_roles",
    "fit_scoped_model",
    "key_frequencies",
    "key_set_fingerprint",
    "link_scoped",
    "nickname_canonicals",
    "read_scoped_encodings",
    "resolved_keys",
    "secret_check",
    "write_scoped_encodings",
]
