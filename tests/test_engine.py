"""The matching engine seam: ``link`` and ``link_scoped`` compare only through an ``Engine``, chosen
by name; the numba engine behind it gives what the kernels give.

Data: 400 generated people spread over agencies (linkage.testing), seeded; nothing real.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import polars as pl
import pytest

from linkage import Schema, Secret, encode
from linkage.errors import ConfigError
from linkage.matching import ENGINES, Engine, LinkSettings, NumbaEngine, engine_named, link
from linkage.matching._kernels import dice_of_pairs
from linkage.scoped import ScopedLinkSettings, encode_scoped, link_scoped
from linkage.testing._synthetic import generate_agencies

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
SECRET = Secret(bytes(range(32)))


class RecordingEngine(NumbaEngine):
    """The numba engine, counting the calls made to it."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, attribute: str):  # type: ignore[no-untyped-def]
        if attribute in Engine.__abstractmethods__:
            object.__getattribute__(self, "calls")[attribute] += 1
        return object.__getattribute__(self, attribute)


class NothingSimilarEngine(NumbaEngine):
    """An engine that finds no pair similar: what ``link`` returns must come from it."""

    name = "nothing-similar"

    def dice_pairs(self, a, b, threshold):  # type: ignore[no-untyped-def]
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)

    def blocked_dice_pairs(self, a, b, threshold, **_):  # type: ignore[no-untyped-def]
        return self.dice_pairs(a, b, threshold)


@pytest.fixture(scope="module")
def people():
    data = generate_agencies(400, rng=np.random.default_rng(3))
    return {name: frame.rename({"rec_id": "record_id"}).select("record_id", *COLUMNS) for name, frame in data.frames.items()}


@pytest.fixture(scope="module", params=["record-filter", "field-scoring"])
def filters(request, people):
    schema = Schema.for_columns(COLUMNS, project="engine-test", group_filters=request.param == "field-scoring")
    return {name: encode(frame, schema, SECRET).encodings for name, frame in people.items()}


def same_result(one, other) -> None:
    assert one.pairs.equals(other.pairs) and one.clusters.equals(other.clusters)
    np.testing.assert_array_equal(one.scores, other.scores)


@pytest.mark.parametrize("blocking", ["none", "lsh"])
def test_link_compares_through_the_engine_and_the_numba_engine_changes_nothing(filters, blocking):
    default = link(filters, LinkSettings(blocking=blocking))
    by_name = link(filters, LinkSettings(blocking=blocking, engine="numba"))
    recording = RecordingEngine()
    recorded = link(filters, LinkSettings(blocking=blocking, engine=recording))
    same_result(default, by_name)
    same_result(default, recorded)
    assert recording.calls["dice_pairs" if blocking == "none" else "blocked_dice_pairs"] >= len(default.stats)
    scorer = "group_dice_of_pairs" if default.scoring == "fs" else "dice_of_pairs"
    assert recording.calls[scorer] >= len(default.stats)


def test_what_link_finds_comes_from_the_engine(filters):
    result = link(filters, LinkSettings(blocking="none", scoring="dice", engine=NothingSimilarEngine()))
    assert len(result.scores) == 0 and result.pairs.height == 0


def test_link_scoped_joins_and_compares_through_the_engine(people):
    schema = Schema.for_columns(COLUMNS, project="engine-test")
    today = dt.date(2024, 6, 1)
    sources = {name: encode_scoped(frame, schema, SECRET, today=today).encodings for name, frame in people.items()}
    recording = RecordingEngine()
    default = link_scoped(sources)
    recorded = link_scoped(sources, ScopedLinkSettings(engine=recording))
    same_result(default, recorded)
    keys, pairs_of_sources = len(next(iter(sources.values())).layouts), len(sources) * (len(sources) - 1) // 2
    assert recording.calls["token_pairs"] == keys * pairs_of_sources
    assert 0 < recording.calls["scope_levels"] <= keys * pairs_of_sources
    assert set(recording.calls) == {"token_pairs", "scope_levels"}


def test_an_unknown_engine_is_one_clear_error(filters):
    with pytest.raises(ConfigError, match=r"matching engine 'gpu' is unknown: choose one of numba"):
        link(filters, LinkSettings(engine="gpu"))
    with pytest.raises(ConfigError, match="'dask' is unknown"):
        engine_named("dask")


def test_engines_are_listed_by_name_and_the_numba_one_is_the_kernels():
    assert sorted(ENGINES) == ["numba"] and isinstance(engine_named("numba"), NumbaEngine)
    engine = RecordingEngine()
    assert engine_named(engine) is engine
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, (50, 4), dtype=np.int64).view(np.uint64)
    i, j = rng.integers(0, 50, 200), rng.integers(0, 50, 200)
    np.testing.assert_array_equal(engine_named("numba").dice_of_pairs(a, a, i, j), dice_of_pairs(a, a, i, j))


def test_the_cli_offers_the_engines(run_cli, tmp_path, filters):
    from linkage.bloom._encodings import write_encodings

    paths = []
    for name, enc in list(filters.items())[:2]:
        paths.append(tmp_path / f"{name}.parquet")
        write_encodings(enc, paths[-1])
    ran = run_cli("link", *paths, "--out", tmp_path / "pairs.csv", "--engine", "numba")
    assert ran.code == 0, ran.err
    assert pl.read_csv(tmp_path / "pairs.csv").height > 0
    refused = run_cli("link", *paths, "--out", tmp_path / "pairs.csv", "--engine", "gpu")
    assert refused.code == 2 and "invalid choice: 'gpu'" in refused.err
