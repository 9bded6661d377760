"""The project's linkage secret and the per-purpose keys derived from it.

The secret is 32 random bytes shared by a project's agencies and never by the coordinator. Every key
the encoder uses is derived from it with HKDF-SHA256, bound to the project id and to one purpose
(one field's token space, the permutation, the randomised-response noise), so that keys for one
purpose say nothing about another and encodings of two projects cannot be joined.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from linkage._files import read_file, write_new_file
from linkage.errors import SecretError

SECRET_BYTES = 32
KEY_BYTES = 32
_KDF_INFO_PREFIX = b"linkage/v1/key"


class Secret:
    """A project's linkage secret. Its repr shows a fingerprint, never the bytes."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes | bytearray) or len(value) != SECRET_BYTES:
            raise SecretError(f"a linkage secret must be exactly {SECRET_BYTES} bytes")
        self._value = bytes(value)

    @classmethod
    def generate(cls) -> Secret:
        return cls(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def from_file(cls, path: str | Path) -> Secret:
        path = Path(path)
        data = read_file(path, what="secret", error=SecretError)
        if len(data) != SECRET_BYTES:
            raise SecretError(
                f"{path}: not a linkage secret (expected {SECRET_BYTES} bytes, found {len(data)});"
                " make one with `linkage keys new`"
            )
        return cls(data)

    def write(self, path: str | Path) -> None:
        """Write the secret to a new file readable by its owner only; never overwrite."""
        write_new_file(Path(path), self._value, what="a secret", error=SecretError)

    @property
    def fingerprint(self) -> str:
        """A short public name for the secret: safe to log, useless for recovering it."""
        return hashlib.sha256(b"linkage/v1/fingerprint" + self._value).hexdigest()[:16]

    def raw_bytes(self) -> bytes:
        """The secret itself: for wrapping it to another agency (the key ceremony), nothing else."""
        return self._value

    def derive(self, project: str, purpose: str, length: int = KEY_BYTES) -> bytes:
        """The key for one purpose within one project."""
        info = b"|".join((_KDF_INFO_PREFIX, project.encode(), purpose.encode()))
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(self._value)

    def __repr__(self) -> str:
        return f"Secret(fingerprint={self.fingerprint!r})"

    def __eq__(self, other: object) -> bool:
        import hmac

        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.fingerprint)
