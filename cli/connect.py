"""`escalations connect zendesk|jira|freshdesk|pagerduty`: set a helpdesk connector up in minutes.

It checks, against the helpdesk itself, that the endpoint's credentials work, that every group the
policy's mapping names exists there and that the mapping knows the API user (whose own changes are
echoes, never applied again), then prints what to paste into the helpdesk: the webhook URL, the
events and where the secret goes. One line says what is wrong, or that all is well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cli.app import CliError, ExitCode, app, run_async, settings

Kind = Literal["zendesk", "jira", "freshdesk", "pagerduty"]


@app.command("connect")
def connect(
    kind: Annotated[
        Kind, typer.Argument(help="The helpdesk: zendesk, jira, freshdesk or pagerduty.", show_default=False)
    ],
    endpoint: Annotated[
        str | None, typer.Option(help="The connector's name in the policy's helpdesks (default: the one of this kind).")
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (default: the POLICY_PATH setting).")] = None,
) -> None:
    """Check a helpdesk connector against the helpdesk, then print what to paste there.

    Credentials come from ESCALATIONS_ENDPOINTS under the connector's name (url, username, token,
    secret); the mapping from the policy's `helpdesks` section (docs/helpdesks.md).

    Examples:
      escalations connect zendesk
      escalations connect jira --endpoint jira-it --policy config/policies/default.yaml
    """
    import httpx

    from activities.helpdesks import CONNECTORS
    from activities.helpdesks.base import Check
    from config.policy import PolicyError, load_policy_file

    config = settings()
    path = policy or config.policy_path
    if not path.is_file():
        raise CliError(f"--policy: no such file: {path}")
    try:
        loaded = load_policy_file(path)
    except PolicyError as err:
        raise CliError(f"{path}: {str(err).splitlines()[-1]}") from None
    named = {n: m for n, m in loaded.helpdesks.items() if m.kind == kind}
    if endpoint is not None:
        named = {n: m for n, m in named.items() if n == endpoint}
    if len(named) != 1:
        which = f"named {endpoint!r} " if endpoint else ""
        found = "none" if not named else f"{len(named)}: {', '.join(named)} (choose with --endpoint)"
        raise CliError(f"{path}: helpdesks has {found} {which}of kind {kind}; see docs/helpdesks.md")
    name, mapping = next(iter(named.items()))
    credentials = config.endpoints.get(name)
    if credentials is None:
        raise CliError(f"{name}: no credentials in ESCALATIONS_ENDPOINTS under {name!r} (url, username, token, secret)")

    async def check() -> Check:
        async with httpx.AsyncClient(timeout=credentials.timeout_seconds) as http:
            return await CONNECTORS[kind].check(mapping, credentials, http)

    try:
        result = run_async(check())
    except Exception as err:  # an answer no documented API gives: one line, naming the helpdesk
        raise CliError(f"{name}: cannot check {kind} at its url: {type(err).__name__}", ExitCode.REFUSED) from None
    if not result.ok:
        raise CliError(f"{name}: {result.message}", ExitCode.REFUSED)
    own = result.own_user
    if own is not None and mapping.own_user != own:
        raise CliError(
            f"{name}: set helpdesks.{name}.own_user: {own!r} (the API user; its own changes are echoes)",
            ExitCode.REFUSED,
        )
    if kind != "pagerduty" and credentials.secret is None:
        raise CliError(f"{name}: no secret in ESCALATIONS_ENDPOINTS under {name!r}: inbound events would get 401")
    print(result.message)
    print()
    print(CONNECTORS[kind].setup_text(mapping, f"{config.link_base}/webhooks/{name}"), end="")
