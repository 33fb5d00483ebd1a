"""Reading a policy file: decode YAML or JSON, validate, and turn every problem into a
'place: reason' line of one `PolicyError`.

The only module of the policy that does I/O; `policy check`, the worker and the activities load
through `load_policy_file`, so all three refuse the same files for the same reasons.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.holiday_dates import holiday_problems
from config.model import Policy


class PolicyError(Exception):
    """A policy file that cannot be used; `problems` lists 'place: reason' lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid policy {source}:\n" + "\n".join(f"  - {p}" for p in problems))


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Validate a decoded policy document, turning pydantic's errors into 'place: reason' lines."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if not loc:  # whole-policy semantic checks arrive joined
                problems += msg.split("\n")
            else:
                problems.append(f"{loc}: {msg}")
        raise PolicyError(source, problems) from None


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a YAML or JSON policy file."""
    import yaml  # local import: keeps this module light for the workflow sandbox

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:  # a binary file, or another encoding: invalid like any other
        raise PolicyError(str(p), [f"not UTF-8 text (byte {exc.start}: {exc.reason})"]) from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PolicyError(str(p), [f"not valid YAML/JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise PolicyError(str(p), ["the document must be a mapping"])
    policy = parse_policy(data, str(p))
    problems = holiday_problems(policy)
    if not problems:
        from config.templates import template_problems  # local import: keeps the sandbox light

        problems = template_problems(policy)
    if problems:
        raise PolicyError(str(p), problems)
    return policy
