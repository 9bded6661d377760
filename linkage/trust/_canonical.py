"""Canonical JSON: the one text of a value that hashes and signatures cover (keys sorted, no spaces,
no NaN). Key cards and wrapped secrets escape everything outside ASCII; audit entries keep it."""

from __future__ import annotations

import json


def canonical_json(value: object, *, ascii_only: bool = False) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only, allow_nan=False)
