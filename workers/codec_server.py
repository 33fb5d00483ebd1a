"""The codec server: decrypts payloads for the Temporal Web UI and `temporal ... --codec-endpoint`, for those allowed.

The protocol is Temporal's remote codec: `POST {endpoint}/decode` (and `/encode`) with a JSON body
`{"payloads": [{"metadata": {...}, "data": "<base64>"}]}` (protobuf JSON of `Payloads`), answered in kind.

Authentication: a bearer token from `ESCALATIONS_CODEC_SERVER_TOKENS`, either in the `Authorization` header
(`temporal workflow show --codec-auth 'Bearer <token>'`) or as the first path segment of the endpoint
(`http://host:8081/<token>`, for a UI that cannot send a header, such as the dev server's). Anything else
answers 401. On the embedded default a local token is made on first run (`.data/codec-server-token`).

CORS: only the configured origins (embedded default: the dev server's Web UI) may call it from a browser.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path

import structlog
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from config.settings import Settings
from workers.codec import CodecError, EncryptionCodec
from workers.health import add_health_routes

log = structlog.get_logger("codec_server")

TOKEN_FILE_NAME = "codec-server-token"
MAX_BODY = 8 * 1024 * 1024
UNDECRYPTABLE_HEADER = "X-Undecryptable-Payloads"  # how many of the answer's payloads could not be decrypted


def undecryptable(reason: str) -> Payload:
    """What a reader sees instead of a payload this server cannot decrypt (an unknown key id, a
    corrupted ciphertext): a JSON object saying so and why. Handing the ciphertext back unchanged
    with a 200 looked like a payload that was never encrypted, or like an empty one."""
    text = json.dumps({"undecryptable": True, "reason": reason})
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


def tokens(settings: Settings) -> list[str]:
    """The accepted tokens; on the embedded default a local token file is made on first run."""
    if settings.codec_server_tokens is not None:
        found = [t.strip() for t in settings.codec_server_tokens.get_secret_value().split(",") if t.strip()]
        if found:
            return found
    if settings.embedded:
        return [local_token(settings.data_dir / TOKEN_FILE_NAME)]
    return []


def local_token(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


def cors_origins(settings: Settings) -> list[str]:
    configured = [o.strip() for o in settings.codec_server_cors_origins.split(",") if o.strip()]
    if configured or not settings.embedded:
        return configured
    port = settings.dev_ui_port
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


def ui_endpoint(settings: Settings) -> str:
    """The endpoint the embedded dev server's Web UI is given (`--ui-codec-endpoint`): token in the path."""
    return f"http://127.0.0.1:{settings.codec_server_port}/{tokens(settings)[0]}"


def create_codec_app(codec: EncryptionCodec, accepted: list[str], origins: list[str]) -> FastAPI:
    if not accepted:
        raise CodecError("the codec server needs ESCALATIONS_CODEC_SERVER_TOKENS (it never serves unauthenticated)")
    app = FastAPI(title="escalations codec server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["POST"],
        allow_headers=["authorization", "content-type", "x-namespace"],
        allow_credentials=True,
    )
    add_health_routes(app, None)

    def allowed(token: str | None) -> bool:
        return token is not None and any(hmac.compare_digest(token.encode(), t.encode()) for t in accepted)

    async def handle(request: Request, operation: str, path_token: str | None) -> Response:
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        if not (allowed(bearer) or allowed(path_token)):
            log.warning(
                "codec.unauthorized", operation=operation, client=request.client.host if request.client else None
            )
            raise HTTPException(401, "a codec server token is needed", headers={"WWW-Authenticate": "Bearer"})
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise HTTPException(413, f"body over {MAX_BODY} bytes")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"body over {MAX_BODY} bytes")
        payloads = Payloads()
        try:
            json_format.Parse(body, payloads)
        except (json_format.ParseError, UnicodeDecodeError, ValueError) as err:
            raise HTTPException(400, f"body: not Payloads JSON: {str(err)[:200]}") from None
        out = []
        unreadable = 0
        for payload in payloads.payloads:
            if operation == "encode":
                out.append(codec.encrypt(payload))
                continue
            try:
                out.append(codec.decrypt(payload))
            except CodecError as err:  # said in its place; the others still show
                unreadable += 1
                reason = str(err)
                out.append(undecryptable(reason))
        headers = {}
        if unreadable:
            log.warning("codec.undecryptable", count=unreadable, reason=reason)
            headers[UNDECRYPTABLE_HEADER] = str(unreadable)
        text = json_format.MessageToJson(Payloads(payloads=out))
        return Response(text, media_type="application/json", headers=headers)

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await handle(request, "encode", None)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await handle(request, "decode", None)

    @app.post("/{token}/encode")
    async def encode_with_token(token: str, request: Request) -> Response:
        return await handle(request, "encode", token)

    @app.post("/{token}/decode")
    async def decode_with_token(token: str, request: Request) -> Response:
        return await handle(request, "decode", token)

    return app
