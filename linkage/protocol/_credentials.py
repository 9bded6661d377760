"""grpc credentials from the task-force TLS material (``linkage.trust.TlsMaterial``)."""

from __future__ import annotations

import grpc

from linkage.trust._pki import TlsMaterial

__all__ = ["channel_credentials", "server_credentials"]


def server_credentials(tls: TlsMaterial) -> grpc.ServerCredentials:
    """Server credentials that demand a client certificate from the task-force CA."""
    return grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)], root_certificates=tls.ca_pem, require_client_auth=True)


def channel_credentials(tls: TlsMaterial) -> grpc.ChannelCredentials:
    """Channel credentials that present this party's certificate and trust only the task-force CA."""
    return grpc.ssl_channel_credentials(root_certificates=tls.ca_pem, private_key=tls.key_pem, certificate_chain=tls.cert_pem)
