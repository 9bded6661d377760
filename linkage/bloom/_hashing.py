"""Keyed token hashing: each distinct token gets its own independent bit positions.

Positions come from BLAKE2b keyed with the token space's key (derived from the project secret), in
counter mode, as independent 32-bit values reduced modulo the filter length. Unlike double hashing
(h1 + i·h2), independent positions leave no arithmetic structure to attack. This is the only place
token keys meet the secret; it runs once per distinct (field, token, salt), never per record.
"""

from __future__ import annotations

import hashlib

import numpy as np

_WORDS_PER_BLOCK = 16  # one 64-byte BLAKE2b digest gives sixteen 32-bit words


def token_positions(key: bytes, tokens: np.ndarray, salts: list[bytes], hashes: int, bits: int) -> np.ndarray:
    """Bit positions, shape (tokens, hashes), of each (token, salt) under ``key``."""
    blocks = -(-hashes // _WORDS_PER_BLOCK)
    out = np.empty((len(tokens), blocks * _WORDS_PER_BLOCK), dtype=np.uint32)
    # Keying is a compression of its own: key each block's hash once, then copy it per token.
    keyed = [hashlib.blake2b(key=key, digest_size=64, person=block.to_bytes(2, "little")) for block in range(blocks)]
    raw = bytearray()
    for token, salt in zip(tokens.tolist(), salts, strict=True):
        message = len(salt).to_bytes(2, "little") + salt + token.to_bytes(8, "little")
        for block in keyed:
            digest = block.copy()
            digest.update(message)
            raw += digest.digest()
    if len(tokens):
        out[:] = np.frombuffer(bytes(raw), dtype="<u4").reshape(out.shape)
    # Modulo bias is below bits / 2**32 (< 2e-5 for 64k-bit filters): negligible.
    return (out[:, :hashes] % np.uint32(bits)).astype(np.uint32)
