"""Encrypted tickets: every payload Temporal stores is AES-256-GCM ciphertext, and one data converter for all.

What Temporal keeps of a ticket (workflow and activity inputs and results, signal and update arguments,
continue-as-new inputs, queries' answers, the summary and details the UI shows, failure messages) passes
through `EncryptionCodec`. Search attributes and workflow ids are not payloads: they are never encrypted,
so they must hold no personal data (docs/encryption.md).

- Each encrypted payload is the whole original payload (metadata and data) sealed with AES-GCM; its own
  metadata says `encoding: binary/encrypted` and names the key (`encryption-key-id`), which is also the
  associated data, so a ciphertext cannot be relabelled to another key.
- The key ring: the first key encrypts, every key decrypts. Rotation adds a new first key and keeps the old
  ones, so tickets written before the rotation stay readable.
- Payloads that are not this encoding pass through `decode` untouched: histories recorded before encryption
  (`tests/histories/`) replay, and a ticket started before encryption was turned on goes on.
- Keys come from settings (`ESCALATIONS_CODEC_KEYS`, or `ESCALATIONS_CODEC_KEY_FILE`). The embedded
  default makes a key file in the data folder on first run. Anywhere else a missing key is an error at
  start, never a silent fall-back to plain text.

`data_converter(settings)` is the one factory used by the client, the worker, the replayer, the CLI and the
tests: the pydantic converter, this codec when enabled, and failure messages moved into encoded attributes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError, Message
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConverter
from temporalio.exceptions import ApplicationError

from config.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_FILE_NAME = "codec-keys"
_NONCE = 12


class CodecError(Exception):
    """Keys missing or malformed, or a payload that the known keys cannot open. The message says which."""


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """Named 256-bit keys; `current` encrypts, all of them decrypt."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str, source: str = "keys") -> KeyRing:
        """`id:base64key` entries separated by commas or new lines, newest (the encrypting one) first."""
        keys: dict[str, bytes] = {}
        for raw in text.replace(",", "\n").splitlines():
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep or not key_id or len(key_id) > 64:
                raise CodecError(f"{source}: each entry is id:base64-key (an id of 1-64 characters)")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise CodecError(f"{source}: key {key_id!r} is not base64") from None
            if len(key) != 32:
                raise CodecError(f"{source}: key {key_id!r} has {len(key)} bytes; AES-256 needs 32")
            if key_id in keys:
                raise CodecError(f"{source}: key id {key_id!r} appears twice")
            keys[key_id] = key
        if not keys:
            raise CodecError(f"{source}: no key")
        return cls(keys=keys, current=next(iter(keys)))

    def render(self) -> str:
        """One `id:base64key` a line, the current key first (the key file's format)."""
        return "".join(f"{key_id}:{base64.b64encode(key).decode()}\n" for key_id, key in self.keys.items())

    def rotated(self) -> KeyRing:
        """A new current key in front of all the old ones."""
        key_id, key = new_key()
        return KeyRing(keys={key_id: key, **self.keys}, current=key_id)


def new_key() -> tuple[str, bytes]:
    """A fresh key and its id (date and a random suffix: sortable, never reused)."""
    return f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=256)


def key_entry() -> str:
    key_id, key = new_key()
    return f"{key_id}:{base64.b64encode(key).decode()}"


class EncryptionCodec(PayloadCodec):
    """`reload` (a key file's reader): called once when a payload names a key id not known yet, so a process
    started before a rotation reads what a newer process wrote."""

    def __init__(self, ring: KeyRing, reload: Callable[[], KeyRing] | None = None) -> None:
        self._reload = reload
        self._use(ring)

    def _use(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.ring.current
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours: written before encryption, or a search attribute / header value
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None and self._reload is not None:
            with contextlib.suppress(CodecError, OSError):
                ring = self._reload()
                if key_id in ring.keys and set(self.ring.keys) <= set(ring.keys):
                    self._use(ring)
            cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"payload encrypted with key {key_id!r}, which is not among the known keys "
                f"({', '.join(self.ring.keys)}): its key was rotated away (keep old keys after a rotation), "
                "or this process reads another data folder or key setting than the service that wrote it"
            )
        try:
            plain = cipher.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], key_id.encode())
            return Payload.FromString(plain)
        except (InvalidTag, DecodeError):
            raise CodecError(f"payload under key {key_id!r} does not decrypt: a different key has that id") from None


def _key_file(settings: Settings) -> tuple[Path | None, bool]:
    """The key file to read, and whether it may be created (only the embedded default's own)."""
    if settings.codec_key_file is not None:
        return settings.codec_key_file, False
    if settings.embedded:
        return settings.data_dir / KEY_FILE_NAME, True
    return None, False


def create_key_file(path: Path) -> KeyRing:
    """A key file with one new key (mode 0600), unless another process made it first: then that one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key_id, key = new_key()
    ring = KeyRing(keys={key_id: key}, current=key_id)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(ring.render())
    try:
        os.link(temporary, path)  # atomic and exclusive: processes starting together agree on one key
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    return KeyRing.parse(path.read_text(), str(path))


def rotate_key_file(path: Path) -> KeyRing:
    """Put a new key in front of the file's keys (old keys stay: old tickets stay readable)."""
    ring = KeyRing.parse(path.read_text(), str(path)).rotated()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(ring.render())
    os.replace(temporary, path)
    return ring


def keyring(settings: Settings, *, create: bool = False) -> KeyRing | None:
    """The settings' keys; None when encryption is off. Raises `CodecError` saying what is missing.

    `create`: the embedded default's key file may be made here; only the service does that (`serve`).
    A client (the CLI, a replayer) only reads it, so pointing one at another data folder never
    leaves a stray key there, and it says which folder it read."""
    if not settings.codec_enabled:
        return None
    if settings.codec_keys is not None:
        return KeyRing.parse(settings.codec_keys.get_secret_value(), "ESCALATIONS_CODEC_KEYS")
    path, may_create = _key_file(settings)
    if path is None:
        raise CodecError(
            "payload encryption is on and no key is configured: set ESCALATIONS_CODEC_KEYS "
            "(make one with `escalations codec-key`) or ESCALATIONS_CODEC_KEY_FILE, "
            "or turn encryption off with ESCALATIONS_CODEC_ENABLED=false"
        )
    ids_file = path.with_name(path.name + ".ids")  # key ids only (no secret): what this data folder has used
    if not path.exists():
        if may_create and not create:
            raise CodecError(
                f"no codec key in {path.parent}: the service writes it when it starts; is ./dev run "
                f"running with this data folder (ESCALATIONS_DATA_DIR={path.parent})?"
            )
        if not may_create:
            raise CodecError(f"codec key file {path} does not exist")
        if ids_file.exists():  # a lost key file must not be replaced silently: its tickets would be unreadable
            raise CodecError(
                f"codec key file {path} is missing, but tickets in {path.parent} were encrypted with key(s) "
                f"{ids_file.read_text().split()}: restore the file (or remove the data folder to start afresh)"
            )
        ring = create_key_file(path)
    else:
        ring = KeyRing.parse(path.read_text(), str(path))
    if may_create and create:
        known = set(ids_file.read_text().split()) if ids_file.exists() else set()
        if not set(ring.keys) <= known:
            ids_file.write_text("".join(f"{key_id}\n" for key_id in sorted(known | set(ring.keys))))
    return ring


def codec_for(settings: Settings, *, create: bool = False) -> EncryptionCodec | None:
    ring = keyring(settings, create=create)
    if ring is None:
        return None
    path, _ = _key_file(settings)
    if settings.codec_keys is None and path is not None:
        key_file = path
        return EncryptionCodec(ring, reload=lambda: KeyRing.parse(key_file.read_text(), str(key_file)))
    return EncryptionCodec(ring)


# Failures whose message stays readable: a query failure reaches the client as a bare message string (no
# payloads to decode), and the client waits out this fixed sentence, which carries no ticket data.
PLAIN_FAILURE_TYPES = frozenset({"NotOpened"})


class EncryptedFailureConverter(DefaultFailureConverter):
    """Messages and stack traces go into the failure's encoded attributes (a payload: encrypted)."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)
        self._plain = DefaultFailureConverter()

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        if isinstance(exception, ApplicationError) and exception.type in PLAIN_FAILURE_TYPES:
            self._plain.to_failure(exception, payload_converter, failure)
        else:
            super().to_failure(exception, payload_converter, failure)


def data_converter(settings: Settings | None = None, *, codec: PayloadCodec | None = None) -> DataConverter:
    """The converter for every client, worker and replayer: pydantic, plus encryption when enabled.

    `codec` given: that codec (tests); otherwise the settings' keys. With encryption, failure messages and
    stack traces move into the failure's encoded attributes, so they are encrypted too.
    """
    if codec is None and settings is not None:
        codec = codec_for(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=EncryptedFailureConverter,
    )


# --- Decoding whole histories (the audit export reads raw history events) -----------------------------


def _walk(message: Message) -> Iterator[Message]:
    """Every Payload and Failure message inside `message`, depth first."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            children = [value]
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            children = [v for v in value.values() if isinstance(v, Message)]
        else:  # a repeated field
            children = list(value)
        for child in children:
            if isinstance(child, Payload):
                yield child
            else:
                if isinstance(child, Failure):
                    yield child
                yield from _walk(child)


async def decode_in_place(messages: Sequence[Message], codec: PayloadCodec | None) -> None:
    """Decrypt every payload inside these protobuf messages (history events) in place.

    Failures whose message was moved into encoded attributes get their message and stack trace back.
    A payload no known key opens is left as it is.
    """
    if codec is None:
        return
    found = [m for message in messages for m in (*([message] if isinstance(message, Failure) else []), *_walk(message))]
    payloads = [m for m in found if isinstance(m, Payload) and m.metadata.get("encoding") == ENCODING]
    for payload in payloads:
        with contextlib.suppress(CodecError):
            payload.CopyFrom((await codec.decode([payload]))[0])
    for failure in (m for m in found if isinstance(m, Failure)):
        if not failure.HasField("encoded_attributes"):
            continue
        attributes = failure.encoded_attributes
        if attributes.metadata.get("encoding") != b"json/plain":
            continue
        with contextlib.suppress(ValueError):
            decoded = json.loads(attributes.data)
            if isinstance(decoded, dict):
                failure.message = str(decoded.get("message", failure.message))
                failure.stack_trace = str(decoded.get("stack_trace", failure.stack_trace))
                failure.ClearField("encoded_attributes")


def rotate_configured_key_file(settings: Settings) -> tuple[Path, KeyRing]:
    """`escalations codec-key --rotate`: put a new current key in front of the settings' key file.

    Returns the file and its new ring; raises `CodecError` when there is no key file to rotate."""
    path, _ = _key_file(settings)
    if path is None or not path.exists():
        raise CodecError(f"no key file to rotate ({path or 'ESCALATIONS_CODEC_KEY_FILE is unset'})")
    ring = rotate_key_file(path)
    keyring(settings, create=True)  # records the new id beside the data folder's key ids
    return path, ring
