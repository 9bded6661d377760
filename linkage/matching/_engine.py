"""The matching engine: the one seam between deciding what to compare and comparing it.

``link`` (record filters) and ``link_scoped`` (match keys) decide which pairs of sources to compare,
which rules and thresholds apply, how to score and how to cluster; every comparison itself goes
through an ``Engine``:

    link         ─▶ dice_pairs (all pairs) or blocked_dice_pairs (Hamming LSH) ─▶ candidates
                 ─▶ dice_of_pairs / group_dice_of_pairs ─▶ scores of chosen pairs
    link_scoped  ─▶ token_pairs (records sharing a key's token) ─▶ scope_levels inside that scope

``NumbaEngine`` (the default, ``"numba"``) runs the compiled kernels on this machine's cores. Another
engine (a GPU, a Dask cluster) implements the same six methods on the same arrays and returns the
same results; it is chosen by name (``LinkSettings(engine=...)``, ``linkage link --engine``) once it
is listed in ``ENGINES``, or passed as an instance. Every method takes and returns numpy arrays:
filters are (rows, words) uint64, pairs are int64 row indices, Dice scores float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from linkage.errors import ConfigError
from linkage.matching._kernels import dice_of_pairs, dice_pairs, group_dice_of_pairs
from linkage.matching._lsh import BandProgress, blocked_dice_pairs
from linkage.matching._scopes import scope_levels, token_pairs

__all__ = ["DEFAULT_ENGINE", "ENGINES", "Engine", "NumbaEngine", "ScopeSlots", "engine_named"]

ScoredPairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # i int64, j int64, Dice float32; sorted by (i, j)


@dataclass(frozen=True, kw_only=True, eq=False)
class ScopeSlots:
    """Where each field's evidence sits in one scope, as the arrays ``scope_levels`` reads: per slot
    its field's column, comparison (BLOOM, DATE, EXACT), first word or lane and width; the first
    word of lanes; the columns the key fixes; and the number of field columns."""

    field: np.ndarray
    comparison: np.ndarray
    offset: np.ndarray
    width: np.ndarray
    lane_word: int
    fixed: np.ndarray
    n_fields: int


class Engine(ABC):
    """What ``link`` and ``link_scoped`` ask of whatever compares encodings."""

    name: ClassVar[str]

    @abstractmethod
    def dice_pairs(self, a: np.ndarray, b: np.ndarray, threshold: float) -> ScoredPairs:
        """Every pair (i of a, j of b) with Dice >= threshold, all pairs compared."""

    @abstractmethod
    def blocked_dice_pairs(
        self,
        a: np.ndarray,
        b: np.ndarray,
        threshold: float,
        *,
        target_completeness: float,
        rng: np.random.Generator,
        progress: Callable[[BandProgress], None] | None = None,
    ) -> ScoredPairs:
        """The pairs with Dice >= threshold among Hamming LSH candidates; ``rng`` draws the bands."""

    @abstractmethod
    def dice_of_pairs(self, a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Dice of the given pairs (a[i[k]], b[j[k]]), float32, in order."""

    @abstractmethod
    def group_dice_of_pairs(self, a_groups: np.ndarray, b_groups: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Per-group Dice of the given pairs: (pairs, groups) float32, NaN where a group is empty."""

    @abstractmethod
    def token_pairs(self, ta: np.ndarray, ha: np.ndarray, tb: np.ndarray, hb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows (i, j) whose tokens ``ta[i] == tb[j]`` are equal, among rows that hold one (``ha``, ``hb``)."""

    @abstractmethod
    def scope_levels(
        self, evidence_a: np.ndarray, evidence_b: np.ndarray, i: np.ndarray, j: np.ndarray, slots: ScopeSlots
    ) -> np.ndarray:
        """(pairs, fields) comparison levels inside one scope: -1 missing, 0..5 agreement."""


class NumbaEngine(Engine):
    """The compiled kernels, parallel over this machine's cores (numba's thread count)."""

    name = "numba"

    # The kernels themselves: their signatures are the engine's (with optional extras of their own).
    dice_pairs = staticmethod(dice_pairs)
    blocked_dice_pairs = staticmethod(blocked_dice_pairs)
    dice_of_pairs = staticmethod(dice_of_pairs)
    group_dice_of_pairs = staticmethod(group_dice_of_pairs)
    token_pairs = staticmethod(token_pairs)

    def scope_levels(
        self, evidence_a: np.ndarray, evidence_b: np.ndarray, i: np.ndarray, j: np.ndarray, slots: ScopeSlots
    ) -> np.ndarray:
        return scope_levels(
            evidence_a, evidence_b, i, j, slots.field, slots.comparison, slots.offset, slots.width,
            slots.lane_word, slots.fixed, slots.n_fields,
        )  # fmt: skip


DEFAULT_ENGINE = "numba"
ENGINES: dict[str, Callable[[], Engine]] = {NumbaEngine.name: NumbaEngine}


def engine_named(engine: str | Engine) -> Engine:
    """The engine of that name (an ``Engine`` passes through); an unknown name is a ConfigError."""
    if isinstance(engine, Engine):
        return engine
    factory = ENGINES.get(engine)
    if factory is None:
        raise ConfigError(f"matching engine {engine!r} is unknown: choose one of {', '.join(sorted(ENGINES))}")
    return factory()
