"""The payload codec on its own: round trips, keys, rotation, tampering, payloads written before encryption."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure

from config.settings import Settings
from tests.conftest import TEST_CONVERTER
from workers.codec import (
    ENCODING,
    KEY_ID,
    CodecError,
    EncryptionCodec,
    KeyRing,
    create_key_file,
    data_converter,
    decode_in_place,
    key_entry,
    keyring,
    rotate_key_file,
)


def ring(*entries: str) -> KeyRing:
    return KeyRing.parse(",".join(entries))


@settings(max_examples=50, deadline=None)
@given(
    data=st.binary(max_size=2048), metadata=st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=40))
)
async def test_round_trip_hides_data_and_metadata(data: bytes, metadata: dict[str, bytes]) -> None:
    codec = EncryptionCodec(ring(key_entry()))
    original = Payload(metadata=metadata, data=data)
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == codec.ring.current.encode()
    assert len(data) < 8 or data not in sealed.data
    assert (await codec.decode([sealed]))[0] == original


async def test_rotation_old_keys_decrypt_new_key_encrypts_a_missing_key_is_named() -> None:
    old, new = key_entry(), key_entry()
    before = EncryptionCodec(ring(old))
    [sealed_old] = await before.encode([Payload(data=b'"jane@example.org"')])
    after = EncryptionCodec(ring(new, old))
    [sealed_new] = await after.encode([Payload(data=b'"x"')])
    assert sealed_new.metadata[KEY_ID] == new.split(":")[0].encode()
    assert (await after.decode([sealed_old]))[0].data == b'"jane@example.org"'
    with pytest.raises(CodecError, match=old.split(":")[0]):
        await EncryptionCodec(ring(new)).decode([sealed_old])


async def test_a_different_key_under_the_same_id_and_tampered_data_are_refused() -> None:
    entry = key_entry()
    key_id = entry.split(":")[0]
    [sealed] = await EncryptionCodec(ring(entry)).encode([Payload(data=b"secret")])
    impostor = f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"
    with pytest.raises(CodecError, match="does not decrypt"):
        await EncryptionCodec(ring(impostor)).decode([sealed])
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecError):
        await EncryptionCodec(ring(entry)).decode([tampered])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    other = key_entry()
    relabelled.metadata[KEY_ID] = other.split(":")[0].encode()  # the key id is authenticated data
    with pytest.raises(CodecError):
        await EncryptionCodec(ring(entry, other)).decode([relabelled])


async def test_payloads_written_before_encryption_pass_through() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"subject": "x"}')
    assert (await EncryptionCodec(ring(key_entry())).decode([plain]))[0] == plain


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no key"),
        ("k1", "id:base64-key"),
        ("k1:not base64!", "not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "32"),
        (f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}", "twice"),
    ],
)
def test_malformed_keys_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        KeyRing.parse(text)


def test_embedded_default_makes_one_key_and_refuses_to_replace_a_lost_one(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    # A client (the CLI) never makes the key: it names the folder it read and leaves it untouched.
    with pytest.raises(CodecError, match=f"no codec key in {tmp_path}: the service writes it"):
        keyring(settings)
    assert list(tmp_path.iterdir()) == []
    first = keyring(settings, create=True)  # the service
    assert first is not None and (tmp_path / "codec-keys").stat().st_mode & 0o777 == 0o600
    assert keyring(settings) == first  # the same key on every start, and for every client
    rotated = rotate_key_file(tmp_path / "codec-keys")
    assert list(rotated.keys)[1:] == list(first.keys)
    (tmp_path / "codec-keys").unlink()
    with pytest.raises(CodecError, match="missing"):
        keyring(settings, create=True)


def test_production_without_keys_refuses_and_off_means_plain(tmp_path: Path) -> None:
    production = Settings(_env_file=None, temporal_address="temporal:7233", data_dir=tmp_path)
    with pytest.raises(CodecError, match="ESCALATIONS_CODEC_KEYS"):
        keyring(production)
    off = production.model_copy(update={"codec_enabled": False})
    assert keyring(off) is None and data_converter(off).payload_codec is None
    keyed = production.model_copy(update={"codec_keys": SecretStr(key_entry())})
    assert isinstance(data_converter(keyed).payload_codec, EncryptionCodec)


def test_two_processes_creating_the_key_file_agree(tmp_path: Path) -> None:
    path = tmp_path / "codec-keys"
    assert create_key_file(path) == create_key_file(path)


async def test_failure_messages_are_encrypted_and_restored_for_the_export() -> None:
    failure = Failure()
    await TEST_CONVERTER.encode_failure(ValueError("customer jane@example.org not found"), failure)
    assert "jane" not in failure.message and b"jane" not in failure.SerializeToString()
    await decode_in_place([failure], TEST_CONVERTER.payload_codec)
    assert failure.message == "customer jane@example.org not found"
