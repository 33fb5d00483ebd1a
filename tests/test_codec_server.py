"""The codec server's `/decode` over HTTP (in process): payloads it can decrypt come back decrypted;
one under an unknown key id or with a corrupted ciphertext comes back as a JSON object that says it
was not decrypted and why, counted in a response header, while the others in the same request still
show. Anything without a token is 401."""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from workers.codec import ENCODING, EncryptionCodec, KeyRing, key_entry
from workers.codec_server import UNDECRYPTABLE_HEADER, create_codec_app

TOKEN = "t0ken-for-tests"


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec")


def plain(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=list(payloads)))


def decoded(text: str) -> list[Payload]:
    out = Payloads()
    json_format.Parse(text, out)
    return list(out.payloads)


async def test_decode_says_which_payloads_it_could_not_decrypt_and_why() -> None:
    ours, other = EncryptionCodec(KeyRing.parse(key_entry())), EncryptionCodec(KeyRing.parse(key_entry()))
    known = ours.encrypt(plain({"email": "jane@example.org"}))
    unknown_key = other.encrypt(plain({"email": "joe@example.org"}))
    corrupted = ours.encrypt(plain("x"))
    corrupted.data = corrupted.data[:-1] + bytes([corrupted.data[-1] ^ 1])
    client = client_of(create_codec_app(ours, [TOKEN], []))

    answer = await client.post(
        "/decode", content=body(known, unknown_key, corrupted), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 200
    assert answer.headers[UNDECRYPTABLE_HEADER] == "2"
    first, second, third = decoded(answer.text)
    assert json.loads(first.data) == {"email": "jane@example.org"}
    for payload, why in ((second, "not among the known keys"), (third, "does not decrypt")):
        assert payload.metadata["encoding"] == b"json/plain"
        shown = json.loads(payload.data)
        assert shown["undecryptable"] is True and why in shown["reason"]
        assert "joe@example.org" not in payload.data.decode()

    fine = await client.post(f"/{TOKEN}/decode", content=body(known))
    assert fine.status_code == 200 and UNDECRYPTABLE_HEADER not in fine.headers
    assert (await client.post("/decode", content=body(known))).status_code == 401


async def test_encode_then_decode_round_trips() -> None:
    codec = EncryptionCodec(KeyRing.parse(key_entry()))
    client = client_of(create_codec_app(codec, [TOKEN], []))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    sealed = await client.post("/encode", content=body(plain([1, 2])), headers=auth)
    assert sealed.status_code == 200
    (payload,) = decoded(sealed.text)
    assert payload.metadata["encoding"] == ENCODING and b"[1, 2]" not in payload.data  # sealed
    opened = await client.post("/decode", content=sealed.text, headers=auth)
    assert [json.loads(p.data) for p in decoded(opened.text)] == [[1, 2]]
