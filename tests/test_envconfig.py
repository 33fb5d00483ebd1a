"""The Temporal connection reads Temporal's own client configuration, with this product's settings over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import Settings
from config.temporal_profile import envconfig_profile
from workers.connection import connect_options


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE",
                 "TEMPORAL_CONFIG_FILE", "TEMPORAL_TLS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    envconfig_profile.cache_clear()
    yield
    envconfig_profile.cache_clear()


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_nothing_configured_is_the_embedded_default() -> None:
    s = settings()
    assert s.embedded and connect_options(s) == {"target_host": "127.0.0.1:7233", "namespace": "default", "tls": False}


def test_temporals_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "my-ns.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "my-ns.a1b2c")
    monkeypatch.setenv("TEMPORAL_API_KEY", "cloud-key")
    s = settings()
    options = connect_options(s)
    assert not s.embedded  # an address from Temporal's configuration: no dev server, no development API key
    assert options["target_host"] == "my-ns.a1b2c.tmprl.cloud:7233" and options["namespace"] == "my-ns.a1b2c"
    assert options["api_key"] == "cloud-key" and options["tls"] is not False  # an API key implies TLS


def test_a_profile_of_the_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.default]\naddress = "localhost:7233"\n\n'
        '[profile.prod]\naddress = "temporal.prod.internal:7233"\nnamespace = "escalations"\n'
        '[profile.prod.grpc_meta]\nx-team = "support"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    options = connect_options(settings(temporal_profile="prod"))
    assert options["target_host"] == "temporal.prod.internal:7233" and options["namespace"] == "escalations"
    assert options["rpc_metadata"] == {"x-team": "support"}
    envconfig_profile.cache_clear()
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    assert connect_options(settings())["target_host"] == "temporal.prod.internal:7233"


def test_this_products_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "from-temporal-env:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-temporal-env")
    monkeypatch.setenv("TEMPORAL_API_KEY", "temporal-env-key")
    s = settings(temporal_address="ours:7233", temporal_namespace="ours", temporal_api_key=SecretStr("our-key"))
    options = connect_options(s)
    assert (options["target_host"], options["namespace"], options["api_key"]) == ("ours:7233", "ours", "our-key")
    # a namespace left at its default does not hide Temporal's
    assert connect_options(settings(temporal_address="ours:7233"))["namespace"] == "from-temporal-env"


def test_a_broken_configuration_file_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text("[profile.default\naddress = ")
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    with pytest.raises(RuntimeError, match=r"temporalio\.envconfig"):
        connect_options(settings())
