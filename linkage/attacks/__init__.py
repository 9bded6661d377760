"""Attacks on the encodings, run by the project against itself: privacy measured, not asserted.

The threat model's coordinator is honest but curious: it holds every encoding of a job (by default
match-key tokens with scoped evidence; record filters, and group filters where a schema asks for
them) but no secret. The strongest realistic attacker
knows the schema, holds a plaintext list overlapping the encoded one, can encode that list under
a key of its own, and may know a few true pairs. Published attack families, each returning an
``AttackResult`` (share re-identified, precision, the guesses):

- ``graph_matching_attack`` — similarity-graph matching (Vidanage et al. 2020): the Dice graph of
  the encodings against the Dice graph of the attacker's own encoding of its list, matched from
  the known pairs outwards with ``linear_sum_assignment``;
- ``frequency_attack`` — pattern mining on bit positions (Christen et al. 2018): blocks of bits
  co-set in the records of a frequent token, labelled by the plaintext's token frequencies, then
  records re-identified by the bits their tokens predict, bootstrapped from the surest guesses;
- ``embedding_attack`` — embedding graph matching (Schäfer, Armknecht et al., ACSAC 2024): sparse
  k-NN graphs, spectral (NetMF-core) node embeddings, Procrustes on the known pairs, mutual best,
  refinement; ``aligned_graph_matching`` is its graph-level core;
- ``xor_linearity_attack`` — folding is XOR (linear): learn the keyed token → folded-bit map from
  the known pairs, predict every plaintext record's filter, match (after Armknecht & Schäfer 2026);
- on match keys (``MatchKeyView``: tokens per key, within-scope similarities):
  ``token_frequency_attack``, ``token_graph_attack`` and ``scope_graph_attack``.

The embedding, XOR and match-key attacks work blockwise on sparse graphs (no n × n matrix), so
they run at 20,000 records and beyond; the first two hold n × n matrices.
``attack_scenario`` builds the encoded list, the plaintext list, the truth and the known pairs from
one population; ``view_filters`` picks what the coordinator sees ("record", a group, "groups").
``privacy_report`` runs both on one schema's encodings beside linkage quality (``linkage
privacy-report``); ``benchmarks/privacy.py`` runs them over the hardening settings, and with
``--scale`` the scalable ones at 1,000 and 20,000 records beside controls they break.
"""

from linkage.attacks._similarity import require_scipy

require_scipy()  # one line naming the ``attacks`` extra, before any module reaches for scipy
# ruff: noqa: E402

from linkage.attacks._embedding import EmbeddingAttackSettings, aligned_graph_matching, embedding_attack
from linkage.attacks._frequency import FrequencyAttackSettings, frequency_attack
from linkage.attacks._graph import GraphAttackSettings, graph_matching_attack
from linkage.attacks._keyed import (
    NO_TOKEN,
    PLACEHOLDER_KEYS,
    MatchKeyView,
    match_key_view,
    scope_graph_attack,
    token_frequency_attack,
    token_graph_attack,
)
from linkage.attacks._privacy_report import PrivacyReport, privacy_report, with_settings_of
from linkage.attacks._result import AttackResult
from linkage.attacks._scenario import AttackScenario, attack_scenario, people_needed
from linkage.attacks._views import ALL_GROUPS, RECORD, view_filters
from linkage.attacks._xor import XorAttackSettings, xor_linearity_attack

__all__ = [
    "ALL_GROUPS",
    "AttackResult",
    "AttackScenario",
    "EmbeddingAttackSettings",
    "FrequencyAttackSettings",
    "GraphAttackSettings",
    "MatchKeyView",
    "NO_TOKEN",
    "PLACEHOLDER_KEYS",
    "PrivacyReport",
    "RECORD",
    "XorAttackSettings",
    "aligned_graph_matching",
    "attack_scenario",
    "embedding_attack",
    "frequency_attack",
    "graph_matching_attack",
    "match_key_view",
    "people_needed",
    "privacy_report",
    "scope_graph_attack",
    "token_frequency_attack",
    "token_graph_attack",
    "view_filters",
    "with_settings_of",
    "xor_linearity_attack",
]
