"""Trust: the task-force PKI (certificates carrying roles), the key ceremony that lets agencies
agree a project secret through the coordinator, and the hash-chained, signed audit log.

None of it opens a socket or imports grpc; ``linkage.protocol`` turns TLS material into credentials.
"""

from linkage.trust._audit import AuditLog, verify
from linkage.trust._ceremony import KeyCard, WrappedSecret, key_epoch_of
from linkage.trust._pki import ROLES, Identity, TlsMaterial, init_ca, issue, load_tls

__all__ = [
    "AuditLog",
    "Identity",
    "KeyCard",
    "ROLES",
    "TlsMaterial",
    "WrappedSecret",
    "init_ca",
    "issue",
    "key_epoch_of",
    "load_tls",
    "verify",
]
