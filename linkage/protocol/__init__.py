"""The wire: generated protobuf code (``v1``), message ↔ column conversion, mTLS credentials, the
role policy interceptor, the thin servicers of node and coordinator, and the client calls between
parties. Everything that imports grpc lives here or in ``services``."""
