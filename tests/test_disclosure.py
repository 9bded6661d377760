"""Issue 14.2: what each agency learns from a job, over every disclosure policy of three agencies.

Pairs are generated here (seeded) over three agencies with records shared two and three ways.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from linkage.jobs._config import DISCLOSURES
from linkage.jobs._disclosure import agency_results, visible_to

AGENCIES = ("a", "b", "c")
KEY = bytes(32)


def generated_pairs(seed: int = 7) -> pl.DataFrame:
    """People held by random subsets of the agencies; a pair per two holders, band match or possible."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(60):
        holders = [a for a in AGENCIES if rng.random() < 0.6]
        for x, y in itertools.combinations(holders, 2):
            rows.append(
                (
                    x,
                    f"{x}{person}",
                    y,
                    f"{y}{person}",
                    float(rng.uniform(0.5, 1.0)),
                    "match" if rng.random() < 0.7 else "possible",
                    f"surname {rng.choice(['exact', 'close', 'differs'])}; {rng.integers(1, 4)} keys shared",
                )
            )
    columns = ["source_a", "id_a", "source_b", "id_b", "similarity", "band", "agreement"]
    return pl.DataFrame(rows, schema=columns, orient="row")


def ids_paired_with(pairs: pl.DataFrame, agency: str, visible: list[str]) -> set[str]:
    """``agency``'s record ids in pairs with a record of a ``visible`` agency."""
    mine = pl.when(pl.col("source_a") == agency).then(pl.col("id_a")).otherwise(pl.col("id_b"))
    other = pl.when(pl.col("source_a") == agency).then(pl.col("source_b")).otherwise(pl.col("source_a"))
    involved = (pl.col("source_a") == agency) | (pl.col("source_b") == agency)
    return set(pairs.filter(involved & other.is_in(visible)).select(mine).to_series())


POLICIES = list(itertools.product(DISCLOSURES, repeat=3))


@pytest.mark.parametrize("thresholds", [None, (0.75, 0.6)], ids=["bands-as-given", "bands-judged"])
@pytest.mark.parametrize("policies", POLICIES, ids=["-".join(p) for p in POLICIES])
def test_an_agency_learns_nothing_of_matches_with_agencies_it_may_not_see(policies, thresholds):
    disclosure = dict(zip(AGENCIES, policies, strict=True))
    pairs = generated_pairs()
    results = agency_results(pairs, disclosure, KEY, thresholds=thresholds)
    for agency in AGENCIES:
        visible = visible_to(agency, disclosure)
        assert visible == sorted(a for a in AGENCIES if a != agency and disclosure[a] == "full")
        # Indistinguishable: the same results (bands, scores, names, field levels) whether or not any
        # pair with an invisible agency exists.
        involved = (pl.col("source_a") == agency) | (pl.col("source_b") == agency)
        others = pl.when(pl.col("source_a") == agency).then(pl.col("source_b")).otherwise(pl.col("source_a"))
        only_visible = pairs.filter(~involved | others.is_in(visible))
        alone = agency_results(only_visible, disclosure, KEY, thresholds=thresholds)[agency]
        assert results[agency].drop("reference").equals(alone.drop("reference"))
        # An intake query asks for one agency's results alone: the same rows.
        asked = agency_results(pairs, disclosure, KEY, thresholds=thresholds, only=agency)
        assert list(asked) == [agency] and asked[agency].equals(results[agency])

        # A row for each of its records paired with a visible agency; where bands are judged, surely
        # for those scored at the review threshold (a lower one only where a visible chain holds it).
        got = set(results[agency].get_column("record_id"))
        if thresholds is None:
            assert got == ids_paired_with(pairs, agency, visible)
        else:
            sure = ids_paired_with(pairs.filter(pl.col("similarity") >= thresholds[1]), agency, visible)
            assert sure <= got <= ids_paired_with(pairs, agency, visible)
        expected = got
        named = set(itertools.chain.from_iterable(results[agency].get_column("shared_with").to_list()))
        assert named <= (set(visible) if disclosure[agency] != "none" else set())
        if disclosure[agency] != "none" and expected:
            assert named  # the visible holders are named to it
        # every row's field levels are those of a pair in its best band, with a visible agency
        assert results[agency].get_column("agreement").null_count() == 0
        # only its own records
        assert all(r.startswith(agency) for r in results[agency].get_column("record_id"))


def test_police_with_victim_services_alone_learns_nothing():
    """The case the issue found: every row police received was a victim-services client."""
    pairs = generated_pairs().filter(~pl.col("source_a").is_in(["b"]) & ~pl.col("source_b").is_in(["b"]))
    for policy in ("receive-only", "none"):
        results = agency_results(pairs, {"a": "full", "c": policy}, KEY)
        assert results["a"].height == 0 and results["c"].height > 0


def test_a_cluster_only_an_invisible_agency_bridged_is_not_told():
    """Police and child welfare each match victim services' record, not each other (score 0.003);
    the cluster makes their pair a match. With victim services receive-only, that match would tell
    police and child welfare that victim services holds the person: the pair is judged by its own
    score instead. Joined through a visible agency, it stays a match."""
    rows = [
        ("police", "p1", "victim_services", "v1", 0.99, "match", None),
        ("child_welfare", "c1", "victim_services", "v1", 0.98, "match", None),
        ("police", "p1", "child_welfare", "c1", 0.003, "match", None),
    ]
    columns = ["source_a", "id_a", "source_b", "id_b", "similarity", "band", "agreement"]
    pairs = pl.DataFrame(rows, schema=columns, orient="row")
    hidden = {"police": "full", "child_welfare": "full", "victim_services": "receive-only"}
    results = agency_results(pairs, hidden, KEY, thresholds=(0.5, 0.2))
    assert results["police"].height == 0 and results["child_welfare"].height == 0
    assert set(results["victim_services"].get_column("record_id")) == {"v1"}
    seen = agency_results(pairs, dict.fromkeys(hidden, "full"), KEY, thresholds=(0.5, 0.2))
    assert seen["police"].row(0, named=True)["band"] == "match"
    assert seen["police"].row(0, named=True)["shared_with"] == ["child_welfare", "victim_services"]
