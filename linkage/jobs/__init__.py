"""Jobs: configuration of nodes and coordinators, the node's encodings and results, the job store
and the disclosure policy. No sockets: the wire is ``linkage.protocol``, the processes ``services``.
"""

from linkage.jobs._agency import RESULT_COLUMNS, AgencyEncodings, agency_encodings, write_results
from linkage.jobs._config import (
    DISCLOSURES,
    AgencyEntry,
    CoordinatorConfig,
    JobDefaults,
    NodeConfig,
    TlsPaths,
    load_coordinator_config,
    load_node_config,
)
from linkage.jobs._disclosure import agency_results, reference_token
from linkage.jobs._store import FINAL_STATES, Job, JobStore

__all__ = [
    "AgencyEncodings",
    "AgencyEntry",
    "CoordinatorConfig",
    "DISCLOSURES",
    "FINAL_STATES",
    "Job",
    "JobDefaults",
    "JobStore",
    "NodeConfig",
    "RESULT_COLUMNS",
    "TlsPaths",
    "agency_encodings",
    "agency_results",
    "load_coordinator_config",
    "load_node_config",
    "reference_token",
    "write_results",
]
