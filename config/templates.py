"""Notice templates: one per event type and channel, overridable by the policy, in sandboxed Jinja2.

A template sees plain data only (the event, the ticket's link, the recipient), never Python objects
with methods worth calling. The environment is Jinja2's `SandboxedEnvironment` with limits against
accidents and mischief in a policy: `range` and loops share a budget of iterations per render,
string growth (`~`, `*`, `+`, `%`, widening filters and methods) is refused beyond `MAX_OUTPUT`,
the output is cut off at `MAX_OUTPUT`, and a render taking longer than `RENDER_SECONDS` is stopped.
A template that breaks a limit fails like any other template error: naming the template and line.

`template_problems(policy)` renders every template of the policy and the built-ins with a sample
ticket; `policy check` and the worker's policy loading refuse a policy with a failing template.
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jinja2 import FunctionLoader, StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from config.event_types import EVENT_TYPES, TEMPLATE_PARTS

if TYPE_CHECKING:
    from config.policy import Policy

MAX_OUTPUT = 256 * 1024  # characters per rendered part
MAX_ITERATIONS = 20_000  # loop items per render, all loops together
RENDER_SECONDS = 2.0
ONE_LINE_MAX = 250  # subject and title: one line, cut

TITLES = {
    "sla.warning": "SLA warning",
    "sla.breached": "SLA breached",
    "ticket.escalated": "Ticket escalated",
    "ticket.reassigned": "Ticket reassigned",
    "ticket.cc": "Department head copied in",
    "ticket.resolved": "Ticket resolved",
    "ticket.reopened": "Ticket reopened",
    "ticket.self_service": "Self-service answer",
    "approval.requested": "Approval requested",
    "digest": "Digest",
}

_FACTS = """Ticket: {{ ticket_id }}{% if subject %} ({{ subject }}){% endif %}
Tier: {{ tier }} ({{ department }}), priority {{ priority }}
{% if deadline %}Deadline: {{ deadline }}
{% endif %}{% if rule %}Rule: {{ rule }}
{% endif %}Reason: {{ reason }}"""

BUILTIN: dict[str, dict[str, dict[str, str]]] = {
    "email": {
        "default": {
            # Constant per ticket, so every mail client threads a ticket's notices together.
            "subject": "[{{ ticket_id }}] {{ subject or 'ticket ' ~ ticket_id }}",
            "text": "{{ title }}\n\n" + _FACTS + "\n\nTimeline: {{ link }}\n",
            "html": (
                "<h2>{{ title }}</h2>\n<table>\n"
                "<tr><th align=left>Ticket</th><td>{{ ticket_id }}"
                "{% if subject %}: {{ subject }}{% endif %}</td></tr>\n"
                "<tr><th align=left>Tier</th><td>{{ tier }} ({{ department }}), priority {{ priority }}</td></tr>\n"
                "{% if deadline %}<tr><th align=left>Deadline</th><td>{{ deadline }}</td></tr>\n{% endif %}"
                "{% if rule %}<tr><th align=left>Rule</th><td>{{ rule }}</td></tr>\n{% endif %}"
                "<tr><th align=left>Reason</th><td>{{ reason }}</td></tr>\n</table>\n"
                '<p><a href="{{ link }}">Timeline of {{ ticket_id }}</a></p>\n'
            ),
        },
        "digest": {
            "subject": "Digest: {{ count }} notices between {{ start }} and {{ end }}",
            "text": (
                "{{ count }} notices for {{ recipient.id if recipient else endpoint }}"
                " between {{ start }} and {{ end }}"
                " (more than {{ limit }} in the window, so they are grouped here).\n\n"
                "{% for e in entries %}- {{ e.ticket_id }} {{ e.title }}{% if e.subject %}: {{ e.subject }}{% endif %}"
                " (tier {{ e.tier }}{% if e.deadline %}, deadline {{ e.deadline }}{% endif %})"
                "{% if e.sent %} [sent on its own]{% endif %}\n  {{ e.reason }}\n  {{ e.link }}\n{% endfor %}"
                "{% if more %}... and {{ more }} more\n{% endif %}"
            ),
            "html": (
                "<h2>{{ count }} notices between {{ start }} and {{ end }}</h2>\n<ul>\n"
                '{% for e in entries %}<li><a href="{{ e.link }}">{{ e.ticket_id }}</a> {{ e.title }}'
                "{% if e.subject %}: {{ e.subject }}{% endif %} (tier {{ e.tier }}"
                "{% if e.deadline %}, deadline {{ e.deadline }}{% endif %}){% if e.sent %} [sent on its own]{% endif %}"
                "<br>{{ e.reason }}</li>\n{% endfor %}</ul>\n{% if more %}<p>... and {{ more }} more</p>{% endif %}\n"
            ),
        },
    },
    "slack": {
        "default": {
            "title": "{{ title }}: {{ ticket_id }}",
            "text": (
                "*{{ title }}* for <{{ link }}|{{ ticket_id }}>{% if subject %}: {{ subject }}{% endif %}\n{{ reason }}"
            ),
        },
        "digest": {
            "title": "Digest: {{ count }} notices",
            "text": (
                "{{ count }} notices between {{ start }} and {{ end }}:\n"
                "{% for e in entries %}• <{{ e.link }}|{{ e.ticket_id }}> {{ e.title }}: {{ e.reason }}\n{% endfor %}"
                "{% if more %}... and {{ more }} more{% endif %}"
            ),
        },
    },
    "teams": {
        "default": {
            "title": "{{ title }}: {{ ticket_id }}",
            "text": "**{{ title }}** for {{ ticket_id }}{% if subject %}: {{ subject }}{% endif %}\n\n{{ reason }}",
        },
        "digest": {
            "title": "Digest: {{ count }} notices",
            "text": (
                "{{ count }} notices between {{ start }} and {{ end }}:\n\n"
                "{% for e in entries %}- [{{ e.ticket_id }}]({{ e.link }}) {{ e.title }}: {{ e.reason }}\n{% endfor %}"
                "{% if more %}\n... and {{ more }} more{% endif %}"
            ),
        },
    },
}


class TemplateLimit(SecurityError):
    """A sandbox limit was hit (size, iterations, time)."""


class TemplateFailure(Exception):
    """A template that cannot be rendered: `name` and `line` say where."""

    def __init__(self, name: str, line: int | None, message: str) -> None:
        self.name, self.line, self.message = name, line, message
        where = f"{name}, line {line}" if line else name
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------- the sandbox
_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_budget")
_WIDENING = frozenset({"format", "format_map", "center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join"})


def _spend(n: int) -> None:
    budget = _budget.get(None)
    if budget is None:
        return
    budget[0] -= n
    if budget[0] < 0:
        raise TemplateLimit(f"more than {MAX_ITERATIONS} loop iterations")


def _checked(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_OUTPUT:
        raise TemplateLimit(f"a value longer than {MAX_OUTPUT} characters")
    return value


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_ITERATIONS:
        raise TemplateLimit(f"range of more than {MAX_ITERATIONS} items")
    return r


class _Generator(CodeGenerator):
    """Jinja2's code generator, with every `~` concatenation size-checked."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked(")
        super().visit_Concat(node, frame)
        self.write(")")


def _budgeted(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        _spend(1)
        yield item


class _Sandbox(SandboxedEnvironment):
    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every loop draws on the render's iteration budget, whatever it iterates over.
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "budgeted", [], [], None, None, lineno=loop.lineno)
        return tree

    def checked(self, value: Any) -> Any:
        return _checked(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise TemplateLimit("exponent above 64")
        if operator == "*" and isinstance(right, int) and isinstance(left, str | list | tuple):
            _checked(range(len(left) * max(right, 0)))
        if operator == "*" and isinstance(left, int) and isinstance(right, str | list | tuple):
            _checked(range(len(right) * max(left, 0)))
        if operator == "%" and isinstance(left, str):
            raise TemplateLimit("%-formatting of strings is not allowed in templates")
        return _checked(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format and format_map are refused (is_safe_attribute), not wrapped

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _WIDENING:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(getattr(__obj, "__self__", None), str) and getattr(__obj, "__name__", "") in _WIDENING:
            raise TemplateLimit(f"str.{__obj.__name__} is not allowed in templates")
        return _checked(SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))


def _limited_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        numbers = [a for a in [*args[1:], *kwargs.values()] if isinstance(a, int) and not isinstance(a, bool)]
        if any(n > 1000 for n in numbers):
            raise TemplateLimit(f"filter {name}: an argument above 1000")
        return _checked(original(*args, **kwargs))

    return wrapper


_SOURCES: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("template_sources")


def _load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
    source = _SOURCES.get({}).get(name)
    if source is None:
        return None
    # Compiled once and cached while the source under this name stays the same.
    return source, name, lambda: _SOURCES.get({}).get(name) == source


def _environment() -> _Sandbox:
    env = _Sandbox(
        loader=FunctionLoader(_load),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name and name.endswith(".html")),
        auto_reload=True,  # a cached template is used while its source is unchanged (`_load`)
        cache_size=400,
        keep_trailing_newline=True,
    )
    env.globals["range"] = _bounded_range
    env.filters["budgeted"] = _budgeted
    for name in ("center", "indent", "wordwrap", "truncate", "format", "replace", "join", "batch", "slice"):
        env.filters[name] = _limited_filter(name, env.filters[name])
    return env


_ENV = _environment()


# ---------------------------------------------------------------------- rendering
def _source(
    overrides: dict[str, dict[str, dict[str, str]]], channel: str, event_type: str, part: str
) -> tuple[str, str]:
    """(name, source) of the template for one part: the policy's, else the built-in."""
    own = overrides.get(channel, {})
    builtin = BUILTIN[channel]
    kind = "digest" if event_type == "digest" else event_type
    for where, table, key in (
        ("notifications.templates", own, kind),
        ("notifications.templates", own, "default" if kind != "digest" else "digest"),
        ("built-in", builtin, kind),
        ("built-in", builtin, "default" if kind != "digest" else "digest"),
    ):
        source = table.get(key, {}).get(part)
        if source is not None:
            return f"{where}.{channel}.{key}.{part}", source
    raise KeyError(f"no template for {channel}/{event_type}/{part}")


def _line_of(exc: BaseException, name: str) -> int | None:
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == name:
            line = frame.lineno
    return line


def _render_one(name: str, source: str, context: dict[str, Any]) -> str:
    sources = {name: source}

    def work() -> str:
        _SOURCES.set(sources)
        _budget.set([MAX_ITERATIONS])
        template = _ENV.get_template(name)
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimit(f"output longer than {MAX_OUTPUT} characters")
            out.append(chunk)
        return "".join(out)

    result: dict[str, Any] = {}

    def runner() -> None:
        try:
            result["ok"] = contextvars.Context().run(work)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=runner, name=f"render {name}", daemon=True)
    thread.start()
    thread.join(RENDER_SECONDS)
    if thread.is_alive():
        # Stop a runaway loop: raise in the rendering thread at its next bytecode.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(TemplateLimit))
        thread.join(1.0)
        raise TemplateFailure(name, None, f"took longer than {RENDER_SECONDS:g} s (stopped)")
    error = result.get("error")
    if error is not None:
        if isinstance(error, TemplateSyntaxError):
            raise TemplateFailure(name, error.lineno, f"syntax error: {error.message}")
        if isinstance(error, TemplateError | TypeError | ValueError | ArithmeticError | AttributeError | LookupError):
            raise TemplateFailure(name, _line_of(error, name), f"{type(error).__name__}: {error}"[:300])
        raise TemplateFailure(name, _line_of(error, name), f"{type(error).__name__}: {error}"[:300])
    return str(result["ok"])


def render(
    overrides: dict[str, dict[str, dict[str, str]]], channel: str, event_type: str, context: dict[str, Any]
) -> dict[str, str]:
    """Every part of the channel's template for this event type, rendered; raises `TemplateFailure`."""
    parts: dict[str, str] = {}
    for part in TEMPLATE_PARTS[channel]:
        name, source = _source(overrides, channel, event_type, part)
        text = _render_one(name, source, context)
        if part in ("subject", "title"):
            text = " ".join(text.split())[:ONE_LINE_MAX]
        parts[part] = text
    return parts


# ---------------------------------------------------------------------- contexts
def _when(value: Any) -> str | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def event_context(event: dict[str, Any], link: str, recipient: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a template sees for one event (plain data only)."""
    return {
        "event": event,
        "type": event["type"],
        "title": TITLES.get(event["type"], event["type"]),
        "ticket_id": event["ticket_id"],
        "subject": event.get("subject"),
        "tier": event["tier"],
        "department": event["department"],
        "priority": event["priority"],
        "deadline": _when(event.get("deadline")),
        "occurred_at": _when(event.get("occurred_at")),
        "rule": event.get("rule"),
        "reason": event["reason"],
        "recipients": event.get("recipients", []),
        "cc": event.get("cc", []),
        "data": event.get("data", {}),
        "link": link,
        "recipient": recipient,
    }


def digest_context(
    entries: list[dict[str, Any]],
    *,
    start: datetime,
    end: datetime,
    limit: int,
    more: int,
    endpoint: str,
    recipient: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "type": "digest",
        "title": TITLES["digest"],
        "entries": entries,
        "count": len(entries) + more,
        "more": more,
        "limit": limit,
        "start": _when(start),
        "end": _when(end),
        "endpoint": endpoint,
        "recipient": recipient,
    }


def sample_event(event_type: str) -> dict[str, Any]:
    """A sample ticket's event, for `policy check` and `notify preview`."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    return {
        "id": "msg_ticket-T-1001_0f1e2d3c_7",
        "type": event_type,
        "occurred_at": now.isoformat(),
        "ticket_id": "T-1001",
        "workflow_id": "ticket-T-1001",
        "tier": 2,
        "department": "billing",
        "priority": "high",
        "recipients": [{"role": "assignee", "id": "ann", "email": "ann@example.com"}],
        "cc": [{"role": "department_head", "id": "bea.head", "email": "bea@example.com"}],
        "rule": "ladders.resolution[1] (res-breach)",
        "reason": "resolution SLA after breach",
        "data": {},
        "subject": "Charged twice",
        "deadline": (now + timedelta(minutes=30)).isoformat(),
    }


def sample_context(channel: str, event_type: str, link_base: str = "http://127.0.0.1:8000") -> dict[str, Any]:
    recipient = {"role": "department_head", "id": "bea.head", "email": "bea@example.com"}
    if event_type != "digest":
        return event_context(sample_event(event_type), f"{link_base}/tickets/T-1001/timeline?format=md", recipient)
    entries = []
    for i, kind in enumerate(("sla.breached", "ticket.cc", "sla.warning")):
        event = sample_event(kind) | {"ticket_id": f"T-10{i:02d}"}
        entry = event_context(event, f"{link_base}/tickets/T-10{i:02d}/timeline?format=md")
        entries.append(entry | {"sent": i == 0})
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    return digest_context(
        entries, start=start, end=start + timedelta(minutes=10), limit=1, more=0, endpoint="mail", recipient=recipient
    )


def template_problems(policy: Policy) -> list[str]:
    """Render every template (the policy's overrides and the built-ins they stand beside) with a
    sample ticket; each problem names the template and the line."""
    overrides: dict[str, dict[str, dict[str, str]]] = {str(k): v for k, v in policy.notifications.templates.items()}
    problems: list[str] = []
    seen: set[str] = set()
    for channel in TEMPLATE_PARTS:
        for event_type in EVENT_TYPES:
            for part in TEMPLATE_PARTS[channel]:
                name, source = _source(overrides, channel, event_type, part)
                if name in seen:
                    continue
                seen.add(name)
                try:
                    _render_one(name, source, sample_context(channel, event_type))
                except TemplateFailure as failure:
                    problems.append(str(failure))
    return problems
