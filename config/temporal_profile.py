"""Temporal's own client configuration (environment variables and the TOML profile file).

Read by the settings (whether a Temporal address is configured at all) and by the connection code
(`workers/connection.py`); kept in `config` so that the settings need nothing from the workers.
"""

from __future__ import annotations

import functools

from temporalio.envconfig import ClientConfigProfile


@functools.cache
def envconfig_profile(profile: str | None = None) -> ClientConfigProfile:
    """Temporal's own client configuration: `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
    `TEMPORAL_TLS*`, and a profile of the TOML file (`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`)."""
    try:
        return ClientConfigProfile.load(profile=profile)
    except Exception as err:  # a malformed TOML file, an unknown profile
        raise RuntimeError(f"Temporal client configuration (temporalio.envconfig): {err}") from err
