import stat

import pytest

from linkage import Secret, SecretError


def test_new_secret_file_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "secret.key"
    secret = Secret.generate()
    secret.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == 32
    assert Secret.from_file(path) == secret
    with pytest.raises(SecretError, match="refusing to overwrite"):
        Secret.generate().write(path)
    assert Secret.from_file(path) == secret


def test_malformed_secret_files_are_refused(tmp_path):
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 31)
    with pytest.raises(SecretError, match="short.key: not a linkage secret"):
        Secret.from_file(short)
    with pytest.raises(SecretError, match="not found"):
        Secret.from_file(tmp_path / "absent.key")


def test_repr_shows_fingerprint_not_bytes():
    value = bytes(range(32))
    text = repr(Secret(value))
    assert value.hex() not in text and str(value) not in text
    assert Secret(value).fingerprint in text


def test_keys_are_separated_by_project_and_purpose():
    secret = Secret(bytes(32))
    keys = {secret.derive(p, q) for p in ("a", "b") for q in ("tokens/name", "tokens/field:x", "hardening/blip")}
    assert len(keys) == 6
    assert secret.derive("a", "tokens/name") == Secret(bytes(32)).derive("a", "tokens/name")
    assert Secret(bytes(31) + b"\x01").derive("a", "tokens/name") != secret.derive("a", "tokens/name")
