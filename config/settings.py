"""Process settings, from the environment (prefix `ESCALATIONS_`) or a `.env` file.

With nothing set, every process uses the embedded default: a Temporal dev server on a SQLite file
under `.data/`. Production sets `ESCALATIONS_TEMPORAL_ADDRESS` (and namespace, TLS, API key) and the
same code talks to a Temporal cluster or Temporal Cloud. Secrets are `SecretStr`: they never show in
reprs or logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = REPO_ROOT / "config" / "policies" / "default.yaml"
# A development-only signing secret so the embedded default works out of the box; `run` warns.
DEV_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktZXNjYWxhdGlvbnMtc2VjcmV0LTAwMDA="


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESCALATIONS_", env_file=".env", extra="ignore")

    # Temporal connection. No address: the embedded dev server.
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: SecretStr | None = None
    task_queue: str = "escalations"
    workflow_sandbox: bool = Field(
        default=True,
        description="run workflows in Temporal's sandbox (guards determinism); off: ~1.5x tickets/s, see README",
    )

    # Embedded dev server.
    data_dir: Path = REPO_ROOT / ".data"
    dev_server_port: int = 7233
    dev_ui_port: int = 8233

    policy_path: Path = DEFAULT_POLICY

    # Side effects.
    helpdesk_url: str | None = Field(default=None, description="base URL of the helpdesk's HTTP API")
    helpdesk_token: SecretStr | None = None
    webhook_url: str | None = Field(default=None, description="replaces the policy's notification endpoints")
    webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    http_timeout_seconds: float = 10.0

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: str = Field(
        default="",
        description="comma-separated name:sha256hex:role|role entries, see README 'Authentication'",
    )
    inbound_webhook_secret: SecretStr | None = None
    inbound_webhook_tolerance_seconds: int = 300

    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    @property
    def embedded(self) -> bool:
        return self.temporal_address is None

    @property
    def address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.dev_server_port}"

    @property
    def uses_dev_secret(self) -> bool:
        return self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET
