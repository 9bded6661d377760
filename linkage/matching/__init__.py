"""Matching encodings: the engine that compares filters, blocking, scoring, solving and ``link``.

encodings of several sources ─▶ candidates (``Engine``: all pairs or LSH) ─▶ scores
(Fellegi–Sunter or Dice) ─▶ clusters and bands ─▶ pairs
"""

from linkage.matching._engine import ENGINES, Engine, NumbaEngine, engine_named
from linkage.matching._evaluate import Quality, blocking_quality, pair_quality, read_candidates, read_pairs, read_truth
from linkage.matching._link import LinkResult, LinkSettings, check_compatible, link
from linkage.matching._summary import link_summary

__all__ = [
    "ENGINES",
    "Engine",
    "LinkResult",
    "LinkSettings",
    "NumbaEngine",
    "Quality",
    "blocking_quality",
    "check_compatible",
    "engine_named",
    "link",
    "link_summary",
    "pair_quality",
    "read_candidates",
    "read_pairs",
    "read_truth",
]
