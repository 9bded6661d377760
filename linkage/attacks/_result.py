"""What an attack returns: its guesses, and how many of them name the right person.

An attack guesses, for each encoded record, one row of the attacker's plaintext list (or none).
Scoring needs the truth — which plaintext row holds each encoded record's person — and that is
known to the harness only: an attack computes its guesses before it is handed the truth.

    targets     encoded records whose person is on the plaintext list and not among the known pairs
    guessed     guesses the attack made for targets or for records with no counterpart at all
    correct     guesses that name the right plaintext row
    reidentified = correct / targets      precision = correct / guessed
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class AttackResult:
    attack: str  # "graph" or "frequency"
    view: str  # the filters attacked: "record", a group name, or "groups" (all group filters)
    guesses: np.ndarray  # int64 per encoded row: the plaintext row guessed, -1 for no guess
    confidence: np.ndarray  # float64 per encoded row: the attack's margin for its guess (higher: surer)
    targets: int | None = None  # None when scored without truth
    guessed: int | None = None
    correct: int | None = None
    seconds: float = 0.0
    details: dict[str, float] = field(default_factory=dict)  # attack-specific counts (tokens found, rounds...)

    @property
    def reidentified(self) -> float:
        """Share of re-identifiable encoded records (not known beforehand) correctly re-identified."""
        if self.targets is None or self.correct is None:
            return float("nan")
        return self.correct / self.targets if self.targets else 0.0

    @property
    def precision(self) -> float:
        """Share of the attack's guesses that are right (1.0 when it made none)."""
        if self.guessed is None or self.correct is None:
            return float("nan")
        return self.correct / self.guessed if self.guessed else 1.0

    def line(self) -> str:
        return (
            f"{self.attack}/{self.view}: re-identified {self.reidentified:.1%} of {self.targets}"
            f" (precision {self.precision:.1%}, {self.guessed} guesses) in {self.seconds:.1f} s"
        )


def scored(
    attack: str,
    view: str,
    guesses: np.ndarray,
    confidence: np.ndarray,
    *,
    truth: np.ndarray | None,
    known_pairs: np.ndarray,
    seconds: float,
    details: dict[str, float] | None = None,
) -> AttackResult:
    """The result of ``guesses`` against ``truth`` (plaintext row per encoded row, -1: not listed).

    Records of the known pairs count neither as targets nor as guesses: the attacker knew them.
    """
    guesses = np.asarray(guesses, dtype=np.int64)
    details = dict(details or {})
    if truth is None:
        return AttackResult(attack, view, guesses, confidence, seconds=seconds, details=details)
    truth = np.asarray(truth, dtype=np.int64)
    if truth.shape != guesses.shape:
        raise ValueError("truth must give one plaintext row (or -1) per encoded record")
    counted = np.ones(len(guesses), dtype=bool)
    counted[np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)[:, 0]] = False
    made = counted & (guesses >= 0)
    return AttackResult(
        attack,
        view,
        guesses,
        confidence,
        targets=int((counted & (truth >= 0)).sum()),
        guessed=int(made.sum()),
        correct=int((made & (guesses == truth)).sum()),
        seconds=seconds,
        details=details,
    )
