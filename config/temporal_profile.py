"""Temporal's own client configuration (`temporalio.envconfig`), read once per profile.

In config because the settings need it to decide where Temporal is (`Settings.address`,
`Settings.embedded`); the worker's connection (`workers/connection.py`) builds on it.
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
