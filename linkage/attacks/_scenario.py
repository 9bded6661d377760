"""The setting an attack is measured in: an encoded list, the attacker's plaintext list, the truth.

The encoded list and the plaintext list are drawn from one population of people (clean values, as
``linkage.testing._synthetic`` makes them): each list holds ``records`` people, a share ``overlap`` of whom
are on both lists, and each list is shuffled on its own. The attacker also knows ``known_share`` ×
``records`` true pairs (a published case, a colluding partner), drawn from the people on both lists.
That is the strongest realistic attacker of the threat model: plaintext values identical to the
encoded ones, the schema, and a few people known on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True, eq=False)
class AttackScenario:
    encoded: pl.DataFrame  # what the agencies encode: record_id and the schema's columns (strings)
    plaintext: pl.DataFrame  # what the attacker holds: record_id and the same columns
    truth: np.ndarray  # int64 per encoded row: plaintext row of the same person, -1 where absent
    known_pairs: np.ndarray  # (k, 2) int64: (encoded row, plaintext row) pairs the attacker knows

    @property
    def overlap(self) -> float:
        return float((self.truth >= 0).mean()) if len(self.truth) else 0.0


def people_needed(records: int, overlap: float) -> int:
    """People to generate for two lists of ``records`` sharing ``overlap`` of them."""
    return 2 * records - round(overlap * records)


def attack_scenario(
    people: pl.DataFrame,
    columns: Sequence[str],
    *,
    records: int,
    overlap: float,
    known_share: float = 0.05,
    rng: np.random.Generator,
) -> AttackScenario:
    """Two lists of ``records`` people from ``people`` (one row per person), sharing ``overlap``."""
    if not 0.0 < overlap <= 1.0:
        raise ValueError("overlap must be in (0, 1]")
    common = round(overlap * records)
    if people.height < people_needed(records, overlap):
        raise ValueError(f"{people_needed(records, overlap)} people needed, {people.height} given")
    if not 0.0 <= known_share <= 1.0 or round(known_share * records) > common:
        raise ValueError("known_share must leave the known pairs among the people on both lists")
    values = people.select(*(pl.col(c).cast(pl.String).fill_null("") for c in columns))
    chosen = rng.permutation(people.height)[: 2 * records - common]
    encoded_people = chosen[:records]
    plaintext_people = np.concatenate([chosen[:common], chosen[records:]])
    encoded_people = encoded_people[rng.permutation(records)]
    plaintext_people = plaintext_people[rng.permutation(records)]
    row_of = np.full(people.height, -1, dtype=np.int64)
    row_of[plaintext_people] = np.arange(records)
    truth = row_of[encoded_people]
    shared = np.flatnonzero(truth >= 0)
    known = np.sort(rng.choice(shared, round(known_share * records), replace=False))
    return AttackScenario(
        encoded=_with_ids(values[encoded_people], "e"),
        plaintext=_with_ids(values[plaintext_people], "p"),
        truth=truth,
        known_pairs=np.stack([known, truth[known]], axis=1).astype(np.int64).reshape(-1, 2),
    )


def _with_ids(frame: pl.DataFrame, prefix: str) -> pl.DataFrame:
    ids = pl.Series("record_id", [f"{prefix}{i}" for i in range(frame.height)], dtype=pl.String)
    return frame.insert_column(0, ids)
