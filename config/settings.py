"""Process settings, from the environment (prefix `ESCALATIONS_`) or a `.env` file.

With nothing set, every process uses the embedded default: a Temporal dev server on a SQLite file
under `.data/`. Production sets `ESCALATIONS_TEMPORAL_ADDRESS` (and namespace, TLS, API key) and the
same code talks to a Temporal cluster or Temporal Cloud. Secrets are `SecretStr`: they never show in
reprs or logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.urls import DEFAULT_ALLOWED_HOSTS, endpoint_problems, parse_hosts

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = REPO_ROOT / "config" / "policies" / "default.yaml"
# A development-only signing secret so the embedded default works out of the box; `run` warns.
DEV_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktZXNjYWxhdGlvbnMtc2VjcmV0LTAwMDA="


class EndpointSettings(BaseModel):
    """Where a policy endpoint (referenced by name) is, and its credentials. Chat and webhook
    endpoints take `url` (a Slack or Teams webhook URL is a capability: a secret); email endpoints
    take the SMTP server. Resolved inside the delivery activity only."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr | None = None
    secret: SecretStr | None = Field(default=None, description="webhook signing secret; default WEBHOOK_SECRET")
    host: str | None = Field(default=None, description="SMTP server")
    port: int | None = Field(default=None, description="default 587 (starttls), 465 (tls), 25 (none)")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(default="escalations@localhost", description="From: address of email notices")
    timeout_seconds: float = 15.0
    token: SecretStr | None = Field(
        default=None,
        description="helpdesk connectors: the API token (Zendesk, Jira), API key (Freshdesk), routing key (PagerDuty)",
    )
    rate_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="helpdesk connectors: most notices a minute to this account, per worker (each makes 1-3 calls)",
    )

    @property
    def smtp_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


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
    temporal_profile: str | None = Field(
        default=None,
        description="profile of Temporal's own client configuration (temporalio.envconfig); unset: TEMPORAL_PROFILE",
    )
    task_queue: str = "escalations"
    workflow_sandbox: bool = Field(
        default=True,
        description="run workflows in Temporal's sandbox (guards determinism); off: faster, see docs/benchmarks.md",
    )

    # Embedded dev server.
    data_dir: Path = REPO_ROOT / ".data"
    dev_server_port: int = 7233
    dev_ui_port: int = 8233

    # Temporal keeps a closed ticket's history this long (namespace retention, set on the embedded
    # default at start; on a cluster or Temporal Cloud it is the namespace's setting).
    retention_days: int = Field(default=7, ge=1, le=3650)

    # The ticket record store (events and summaries, kept after Temporal's retention).
    store_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db; unset: SQLite in data_dir"
    )
    store_events: bool = Field(default=True, description="write each ticket's events to the record store")

    policy_path: Path = DEFAULT_POLICY

    # Side effects.
    helpdesk_url: str | None = Field(default=None, description="base URL of the helpdesk's HTTP API")
    helpdesk_token: SecretStr | None = None
    webhook_url: str | None = Field(default=None, description="replaces the policy's notification endpoints")
    webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    allowed_endpoint_hosts: str = Field(
        default=DEFAULT_ALLOWED_HOSTS,
        description="comma-separated hosts (or *.domain) endpoint URLs may point at; see config/urls.py",
    )
    http_timeout_seconds: float = 10.0
    endpoints: dict[str, EndpointSettings] = Field(
        default_factory=dict,
        description="JSON: policy endpoint name -> {url} (webhook, slack, teams) or {host, port, security, "
        "username, password, sender} (email)",
    )
    public_url: str | None = Field(
        default=None, description="base URL of the HTTP API for links in notices; default http://API_HOST:API_PORT"
    )

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: str = Field(
        default="",
        description="comma-separated name:sha256hex:role|role entries, see docs/api.md",
    )
    inbound_webhook_secret: SecretStr | None = None
    inbound_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="larger request bodies are refused with 413 before they are read"
    )
    api_temporal_timeout_seconds: float = Field(
        default=30.0, gt=0, description="longest wait on Temporal within one request; then 503"
    )
    page_token_key: SecretStr | None = Field(
        default=None, description="seals list page tokens; unset: a random key per process"
    )

    # Processes (workers/main.py): health endpoints of a worker running alone, graceful shutdown.
    worker_health_host: str = "127.0.0.1"
    worker_health_port: int | None = Field(default=8001, description="/healthz and /readyz of `escalations worker`")
    graceful_shutdown_seconds: float = Field(
        default=30.0, ge=0, description="on SIGTERM, how long running activities may take to finish"
    )

    # Payload encryption (workers/codec.py) and the codec server (workers/codec_server.py).
    codec_enabled: bool = Field(default=True, description="encrypt every payload Temporal stores (AES-GCM)")
    codec_keys: SecretStr | None = Field(
        default=None,
        description="comma-separated id:base64-key entries (32-byte keys); the first encrypts, all decrypt",
    )
    codec_key_file: Path | None = Field(
        default=None, description="a key file (one id:base64-key a line, newest first); embedded default: data dir"
    )
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = 8081
    codec_server_tokens: SecretStr | None = Field(
        default=None, description="comma-separated bearer tokens the codec server accepts; embedded: a local token"
    )
    codec_server_cors_origins: str = Field(
        default="", description="comma-separated origins (the Temporal UI's); embedded: the dev server's UI"
    )

    # Review: the spike check (docs/review.md).
    review_spike_check: bool = Field(default=True, description="run the review.spike watch in the worker")
    review_spike_interval_minutes: float = Field(default=15, gt=0, description="how often the spike check runs")
    review_spike_baseline_days: int = Field(default=28, ge=7, le=365, description="the normal band's window")
    review_spike_sigma: float = Field(default=3.0, gt=0, description="band: mean + sigma x standard deviation")
    review_spike_floor: int = Field(default=5, ge=1, description="fewer than this in a day is never a spike")

    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise"
    )
    log_level: str = "INFO"

    # Telemetry (workers/telemetry.py).
    metrics_address: str = Field(
        default="127.0.0.1:9464",
        description="host:port of the worker's Prometheus /metrics (SDK and product series); empty: off",
    )
    tracing: bool = Field(default=False, description="OpenTelemetry traces: API call -> workflow -> activities")
    tracing_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces URL; unset: OTEL_EXPORTER_OTLP_* or http://localhost:4318"
    )

    @model_validator(mode="after")
    def _endpoint_urls_allowed(self) -> Settings:
        configured = [("webhook_url", self.webhook_url), ("helpdesk_url", self.helpdesk_url)]
        for name, endpoint in self.endpoints.items():
            if endpoint.url is not None:
                configured.append((f"endpoints.{name}.url", endpoint.url.get_secret_value()))
            if endpoint.host is not None:  # an SMTP server: its host is checked like a URL's
                configured.append((f"endpoints.{name}.host", f"http://{endpoint.host}/"))
        problems = endpoint_problems([(name, url) for name, url in configured if url], self.endpoint_hosts)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def endpoint_hosts(self) -> list[str]:
        return parse_hosts(self.allowed_endpoint_hosts)

    @property
    def link_base(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def embedded(self) -> bool:
        """No address here nor in Temporal's own client configuration (TEMPORAL_ADDRESS, a profile)."""
        if self.temporal_address is not None:
            return False
        from config.temporal_profile import envconfig_profile

        return envconfig_profile(self.temporal_profile).address is None

    @property
    def address(self) -> str:
        if self.temporal_address:
            return self.temporal_address
        from config.temporal_profile import envconfig_profile

        return envconfig_profile(self.temporal_profile).address or f"127.0.0.1:{self.dev_server_port}"

    @property
    def store_database_url(self) -> str:
        if self.store_url is not None:
            return self.store_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'store.db'}"

    @property
    def uses_dev_secret(self) -> bool:
        return self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET
