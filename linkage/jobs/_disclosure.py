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
or ``none`` agencies is invisible to A: no row, no band, no similarity, no name. So is a match that
only a record of such an agency bridged: where the job's thresholds are given, two records of
agencies A may see that share a cluster only through an invisible agency's record are judged by
their own score (``possible`` at or above the review threshold, else no row). So A's results are
the same whether or not any pair with an invisible agency exists (``tests/test_disclosure.py``
checks this over every policy combination of three agencies, and the bridge case).

A row's ``agreement`` says, for the pair that gave its similarity, which fields agreed at which
level (``surname close``): never a value, and only from a pair A may see.

An agency's own duplicates (its records found to be one person, where its policy lets them share a
cluster) are told to it in ``same_person_as``: its other record ids of that person. Only what A may
see goes into it: pairs of A's own records, judged by their score alone (``match`` at or above the
job's match threshold, else ``possible``), and A's ``match`` pairs with visible agencies' records;
two of A's records are the same person when a chain of such pairs at or above the match threshold
joins them. Records joined only through an invisible agency's record are not (nor is the band of an
own pair moved by a cluster an invisible agency shaped), so A's results still do not depend on pairs
with invisible agencies. A record with own duplicates and nothing else receives a row too.

An agency never receives another agency's record ids. Each row carries a reference token: opaque,
different for every agency and job, so two agencies cannot join their results on it; the
coordinator can map it back to a record.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import numba
import numpy as np
import polars as pl

from linkage.jobs._agency import RESULT_COLUMNS


def reference_token(job_key: bytes, agency: str, record_id: str) -> str:
    return hmac.new(job_key, f"{agency}\x00{record_id}".encode(), hashlib.sha256).hexdigest()[:20]


def visible_to(agency: str, disclosure: Mapping[str, str]) -> list[str]:
    """The other agencies whose matches with ``agency`` may be revealed to it at all: the ``full`` ones."""
    return sorted(a for a, p in disclosure.items() if p == "full" and a != agency)


def agency_results(
    pairs: pl.DataFrame,
    disclosure: Mapping[str, str],
    job_key: bytes,
    *,
    thresholds: tuple[float, float] | None = None,
    only: str | None = None,
) -> dict[str, pl.DataFrame]:
    """Per agency: record_id, band (best of its pairs), similarity (best), reference, shared_with,
    same_person_as (its own other records of the person), agreement (of the best-scoring pair of the
    best band). ``thresholds``: the job's match and
    review thresholds, which judge pairs of an agency's own records; without them those are left out.
    ``only``: that agency's results alone (each agency's are made apart from the others')."""
    if "agreement" not in pairs.columns:  # profiles without comparison levels
        pairs = pairs.with_columns(agreement=pl.lit(None, dtype=pl.String))
    own = pl.col("source_a") == pl.col("source_b")
    threshold = None if thresholds is None else thresholds[0]
    if thresholds is not None:  # an own pair's band follows its score alone; an uncompared one tells nothing
        own_band = pl.when(pl.col("similarity") >= thresholds[0]).then(pl.lit("match")).otherwise(pl.lit("possible"))
        pairs = pairs.filter(~own | (pl.col("similarity") >= thresholds[1])).with_columns(
            band=pl.when(own).then(own_band).otherwise(pl.col("band"))
        )
    else:
        pairs = pairs.filter(~own)
    out = {}
    for agency, policy in disclosure.items():
        if only is not None and agency != only:
            continue
        visible = visible_to(agency, disclosure)
        nameable = visible if policy != "none" else []
        seen = pairs if thresholds is None else _without_bridges(pairs, [agency, *visible], thresholds)
        halves = pl.concat([
            seen.select(agency="source_a", record_id="id_a", other="source_b", other_id="id_b", band="band", similarity="similarity", agreement="agreement"),
            seen.select(agency="source_b", record_id="id_b", other="source_a", other_id="id_a", band="band", similarity="similarity", agreement="agreement"),
        ])  # fmt: skip
        mine = halves.filter((pl.col("agency") == agency) & pl.col("other").is_in([*visible, agency])).sort(
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
        # A list, not map_elements: that inspects the function's bytecode on every call.
        references = [reference_token(job_key, agency, record_id) for record_id in rows.get_column("record_id").to_list()]
        rows = rows.with_columns(reference=pl.Series(references, dtype=pl.String))
        same = _same_person(mine, agency, threshold)
        rows = rows.join(same, on="record_id", how="left").with_columns(
            pl.col("same_person_as").fill_null(pl.lit([], dtype=pl.List(pl.String)))
        )
        out[agency] = rows.select(RESULT_COLUMNS)
    return out


def _without_bridges(pairs: pl.DataFrame, allowed: list[str], thresholds: tuple[float, float]) -> pl.DataFrame:
    """The pairs among ``allowed`` agencies, each cross-agency ``match`` kept only where a chain of
    pairs scored at or above the match threshold joins the two *through allowed agencies' records*:
    a cluster that only a record of another agency bridged says that agency holds the person, so
    such a pair is judged by its own score (``possible`` at or above the review threshold, else
    not told)."""
    among = pairs.filter(pl.col("source_a").is_in(allowed) & pl.col("source_b").is_in(allowed))
    ends = pl.concat([among.select(s="source_a", r="id_a"), among.select(s="source_b", r="id_b")]).unique()
    code = ends.with_columns(n=pl.int_range(pl.len(), dtype=pl.Int64))
    coded = among.join(code.rename({"s": "source_a", "r": "id_a", "n": "na"}), on=["source_a", "id_a"]).join(
        code.rename({"s": "source_b", "r": "id_b", "n": "nb"}), on=["source_b", "id_b"]
    )
    strong = coded.filter(pl.col("similarity") >= thresholds[0])
    root = _components(code.height, strong.get_column("na").to_numpy(), strong.get_column("nb").to_numpy())
    joined = pl.Series(root[coded.get_column("na").to_numpy()] == root[coded.get_column("nb").to_numpy()])
    cross = pl.col("source_a") != pl.col("source_b")
    bridged = cross & (pl.col("band") == "match") & ~pl.lit(joined)
    return (
        coded.with_columns(bridged=bridged)
        .filter(~pl.col("bridged") | (pl.col("similarity") >= thresholds[1]))
        .with_columns(band=pl.when(pl.col("bridged")).then(pl.lit("possible")).otherwise(pl.col("band")))
        .select(pairs.columns)
    )


@numba.njit(cache=True)
def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each node's component (a root node) under the edges (a[k], b[k])."""
    parent = np.arange(n)
    for k in range(a.shape[0]):
        x, y = a[k], b[k]
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x != y:
            parent[max(x, y)] = min(x, y)
    for x in range(n):
        r = x
        while parent[r] != r:
            r = parent[r]
        parent[x] = r
    return parent


def _same_person(mine: pl.DataFrame, agency: str, threshold: float | None) -> pl.DataFrame:
    """record_id -> the agency's other records joined to it by a chain of ``match`` pairs at or above
    ``threshold``, through its own records and those of agencies visible to it (``mine``)."""
    empty = pl.DataFrame(schema={"record_id": pl.String, "same_person_as": pl.List(pl.String)})
    if threshold is None:
        return empty
    edges = mine.filter((pl.col("band") == "match") & (pl.col("similarity") >= threshold))
    if edges.filter(pl.col("other") == agency).is_empty() and not edges.select("other", "other_id").is_duplicated().any():
        return empty  # no own pair, and no partner record matched by two of its records
    here = edges.select(pl.lit(agency).alias("s"), pl.col("record_id").alias("r"))
    there = edges.select(pl.col("other").alias("s"), pl.col("other_id").alias("r"))
    nodes = pl.concat([here, there]).unique(maintain_order=True)
    index = {key: i for i, key in enumerate(nodes.iter_rows())}
    parent = np.arange(len(index))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for a, b in zip(here.iter_rows(), there.iter_rows(), strict=True):
        ra, rb = find(index[a]), find(index[b])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    own_ids = [r for s, r in index if s == agency]
    groups = pl.DataFrame(
        {"record_id": own_ids, "group": [find(index[(agency, r)]) for r in own_ids]},
        schema={"record_id": pl.String, "group": pl.Int64},
    )
    members = groups.group_by("group").agg(pl.col("record_id").sort().alias("all"))
    return (
        groups.join(members, on="group")
        .with_columns(same_person_as=pl.col("all").list.set_difference(pl.concat_list(pl.col("record_id"))).list.sort())
        .filter(pl.col("same_person_as").list.len() > 0)
        .select("record_id", "same_person_as")
    )
