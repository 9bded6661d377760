"""The generated protocol code matches proto/ (run `make proto` after editing a .proto file),
and message <-> array conversion round-trips without a server."""

import numpy as np
import polars as pl
import pytest

from linkage import Schema, Secret, encode
from linkage.errors import TransferError
from linkage.protocol import _codegen
from linkage.protocol._convert import encoding_chunks, encodings_from_chunks, result_chunks, results_from_chunks


def test_generated_code_is_fresh():
    for name, text in _codegen.generated_sources().items():
        assert (_codegen.OUT / name).read_text() == text, f"{name} is stale: run `make proto`"


@pytest.fixture
def encodings(febrl4, febrl_schema):
    return encode(febrl4[0].head(1000), febrl_schema, Secret(bytes(32))).encodings


def test_encodings_round_trip_in_chunks(encodings):
    import dataclasses

    encodings = dataclasses.replace(encodings, key_epoch=5)
    chunks = list(encoding_chunks(encodings, 128))
    assert len(chunks) == 9 and chunks[-1].last
    back, digest = encodings_from_chunks(iter(chunks), peer="police")
    assert digest == chunks[-1].digest
    assert np.array_equal(back.filters, encodings.filters) and np.array_equal(back.group_filters, encodings.group_filters)
    assert np.array_equal(back.present, encodings.present) and back.record_ids.to_list() == encodings.record_ids.to_list()
    assert back.schema_fingerprint == encodings.schema_fingerprint and back.project == encodings.project
    assert back.key_epoch == 5


def test_altered_truncated_or_padded_streams_are_refused(encodings):
    chunks = list(encoding_chunks(encodings, 256))
    altered = list(chunks)
    altered[1].filters = bytes([altered[1].filters[0] ^ 4]) + altered[1].filters[1:]
    for bad, reason in ((altered, "digest"), (chunks[:-1], "ended before"), (chunks[:2] + chunks[3:], "received")):
        with pytest.raises(TransferError, match=f"police: .*{reason}"):
            encodings_from_chunks(iter(bad), peer="police")


def test_results_round_trip(encodings):
    results = pl.DataFrame({
        "record_id": ["a", "b"], "band": ["match", "possible"], "similarity": [0.99, 0.4],
        "reference": ["r1", "r2"], "shared_with": [["police"], []], "same_person_as": [[], ["c", "d"]],
        "agreement": ["surname exact, date_of_birth close; 2 keys shared", None],
    })  # fmt: skip
    job, back, digest = results_from_chunks(iter(result_chunks("job-1", results, chunk_rows=1)), peer="coordinator")
    assert job == "job-1" and back.equals(results) and len(digest) == 64


def test_the_schema_fingerprint_travels():
    assert len(Schema.for_columns(["surname"], project="x").fingerprint) == 32
