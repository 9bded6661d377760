"""Review pages: a local web application on a coordinator's or a node's data folder.

Auditors see the audit log as a filterable timeline, each entry's verification state, the chain
anchor, and a page per job (its steps, counts per band, the score histogram with both thresholds,
the rules linking tightened and why). Each page that reads the audit log appends an ``audit log
read`` entry. Data stewards, on a node's folder, see their results per job and review the possible
matches one at a time, seeing only their own record; decisions are kept in ``reviews.db`` in the
folder and exported as a labels file (``linkage.matching._labels``) that suggests a match threshold.

    ServeConfig ─▶ create_server / run_server (werkzeug, optional mTLS) ─▶ create_app (Flask)
                                                                             │
                       ReviewSite (what a folder holds, who may see it) ◀────┘
"""

from linkage._extras import require_extra

require_extra("review", "the review server")  # one line naming the ``review`` extra, before flask is imported
# ruff: noqa: E402

from services.review._app import create_app
from services.review._folder import AuditReader, LogFilters, ReviewSite, Stewardship
from services.review._reviews import ReviewStore, export_labels
from services.review._server import DEFAULT_LISTEN, ServeConfig, create_server, run_server, serve

__all__ = [
    "DEFAULT_LISTEN",
    "AuditReader",
    "LogFilters",
    "ReviewSite",
    "ReviewStore",
    "ServeConfig",
    "Stewardship",
    "create_app",
    "create_server",
    "export_labels",
    "run_server",
    "serve",
]
