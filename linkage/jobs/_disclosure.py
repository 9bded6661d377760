"""What each agency may learn from a job: its own records' bands, and who else holds them.

Policies, per agency (the project's disclosure policy):
- ``full``: it receives its results, and other agencies may learn that it holds a matching record.
- ``receive-only``: it receives its results, naming ``full`` agencies; it is never disclosed to others
  (victim service providers, say).
- ``none``: it receives its results naming no other agency, and is never disclosed to others.

The rule, exactly. For an agency A, the agencies *visible* to A are the other agencies whose policy
is ``full``; those *named* to A are the visible ones, or none when A's policy is ``none``. A
receives a row for one of its records if and only if the record has a pair (match or possible) with
a record of a visible agency; the row's band and similarity come from those pairs only, and it names
the named agencies among the pairs of its best band. A match that exists only with ``receive-only``
or ``none`` agencies is invisible to A: no row, no band, no similarity, no name. So A's results are
the same whether or not any pair with an invisible agency exists (``tests/test_disclosure.py``
checks this over every policy combination of three agencies).

A row's ``agreement`` says, for the pair that gave its similarity, which fields agreed at which
level (``surname close``): never a value, and only from a pair with a visible agency.

An agency never receives another agency's record ids. Each row carries a reference token: opaque,
different for every agency and job, so two agencies cannot join their results on it; the
coordinator can map it back to a record.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from functools import partial

import polars as pl

from linkage.jobs._agency import RESULT_COLUMNS


def reference_token(job_key: bytes, agency: str, record_id: str) -> str:
    return hmac.new(job_key, f"{agency}\x00{record_id}".encode(), hashlib.sha256).hexdigest()[:20]


def visible_to(agency: str, disclosure: Mapping[str, str]) -> list[str]:
    """The other agencies whose matches with ``agency`` may be revealed to it at all: the ``full`` ones."""
    return sorted(a for a, p in disclosure.items() if p == "full" and a != agency)


def agency_results(pairs: pl.DataFrame, disclosure: Mapping[str, str], job_key: bytes) -> dict[str, pl.DataFrame]:
    """Per agency: record_id, band (best of its pairs), similarity (best), reference, shared_with,
    agreement (of the best-scoring pair of the best band)."""
    if "agreement" not in pairs.columns:  # profiles without comparison levels
        pairs = pairs.with_columns(agreement=pl.lit(None, dtype=pl.String))
    halves = pl.concat([
        pairs.select(agency="source_a", record_id="id_a", other="source_b", band="band", similarity="similarity", agreement="agreement"),
        pairs.select(agency="source_b", record_id="id_b", other="source_a", band="band", similarity="similarity", agreement="agreement"),
    ])  # fmt: skip
    out = {}
    for agency, policy in disclosure.items():
        visible = visible_to(agency, disclosure)
        nameable = visible if policy != "none" else []
        mine = halves.filter((pl.col("agency") == agency) & pl.col("other").is_in(visible)).sort(
            "similarity", descending=True, nulls_last=True
        )
        best_band = pl.when((pl.col("band") == "match").any()).then(pl.lit("match")).otherwise(pl.lit("possible"))
        rows = (
            mine.group_by("record_id")
            .agg(
                band=best_band,
                similarity=pl.col("similarity").max(),
                # others named only from pairs in the record's best band
                shared_with=pl.col("other")
                .filter(pl.col("other").is_in(nameable) & ((pl.col("band") == "match") | ~(pl.col("band") == "match").any()))
                .unique()
                .sort(),
                agreement=pl.col("agreement")
                .filter((pl.col("band") == "match") | ~(pl.col("band") == "match").any())
                .first(),  # rows are sorted by similarity: the best-scoring pair's
            )
            .sort("record_id")
        )
        rows = rows.with_columns(
            reference=pl.col("record_id").map_elements(partial(reference_token, job_key, agency), return_dtype=pl.String)
        )
        out[agency] = rows.select(RESULT_COLUMNS)
    return out
