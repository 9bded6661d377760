"""The agency node process: its gRPC server over the library's encoding of the agency's records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from linkage._files import private_folder
from linkage.errors import ConfigError
from linkage.jobs._config import NodeConfig
from linkage.protocol._node import NodeService, node_policy
from linkage.protocol._server import create_server, refusal_reporter
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.trust._pki import TlsMaterial
from services._lifecycle import Started

__all__ = ["start_node"]


def start_node(
    config: NodeConfig,
    tls: TlsMaterial,
    *,
    on_results: Callable[[str, Path], None] | None = None,
    service: NodeService | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> Started:
    """A started node server: (server, port, health servicer). Refuses a certificate of another party."""
    identity = tls.identity
    if (identity.role, identity.name) != ("node", config.agency):
        raise ConfigError(
            f"{config.source or 'node config'}: node.agency is {config.agency!r} but the certificate is {identity}; a node serves only as the agency its certificate names"
        )
    private_folder(config.data_dir)
    service = service or NodeService(config, on_results=on_results)
    return create_server(
        config.listen,
        tls,
        node_policy(config),
        lambda server: pb_grpc.add_NodeServicer_to_server(service, server),
        on_refusal=refusal_reporter(service.audit, f"node/{config.agency}"),
        interceptors=interceptors,
    )
