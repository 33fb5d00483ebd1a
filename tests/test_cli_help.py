"""Every command's help shows at least one example a person can copy (`escalations X --help`)."""

from __future__ import annotations

from typing import Any

import typer

from cli.app import app
from cli.main import COMMAND_MODULES


def leaves(command: Any, path: str = "escalations") -> list[tuple[str, Any]]:
    if hasattr(command, "commands"):  # a group (Typer's own click)
        return [leaf for name, sub in command.commands.items() for leaf in leaves(sub, f"{path} {name}")]
    return [(path, command)]


def test_every_command_help_has_an_example() -> None:
    assert COMMAND_MODULES  # importing cli.main registered every command on the app
    commands = leaves(typer.main.get_command(app))
    assert len(commands) > 20
    missing = [path for path, command in commands if "Example" not in (command.help or "")]
    assert missing == [], f"no example in the help of: {', '.join(missing)}"
