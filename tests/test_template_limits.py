"""The template sandbox's time bound: a render that goes on is stopped at its deadline, in the
thread that renders, and fails naming the template like any other template error."""

from __future__ import annotations

import time

import pytest

from config import template_sandbox, templates


@pytest.mark.parametrize(
    "source",
    [
        # No loop at all: a macro that calls itself twice, 2**40 calls.
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        # Within the iteration budget: each item calls a macro that loops no more.
        "{% macro g(n) %}{% if n %}{{ g(n - 1) }}{{ g(n - 1) }}{% endif %}{% endmacro %}"
        "{% for i in range(100) %}{{ g(30) }}{% endfor %}",
    ],
)
def test_a_template_that_does_not_end_is_stopped_at_its_deadline(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_sandbox, "RENDER_SECONDS", 0.2)
    context = templates.sample_context("email", "sla.breached")
    began = time.monotonic()
    with pytest.raises(templates.TemplateFailure) as failure:
        templates.render({"email": {"default": {"text": source}}}, "email", "sla.breached", context)
    assert time.monotonic() - began < 5
    assert failure.value.name == "notifications.templates.email.default.text"
    assert failure.value.message == "took longer than 0.2 s (stopped)"


def test_numbers_are_bounded() -> None:
    source = "{% set ns = namespace(n=10 ** 60) %}{% for i in range(20) %}{% set ns.n = ns.n * ns.n %}{% endfor %}"
    context = templates.sample_context("email", "sla.breached")
    with pytest.raises(templates.TemplateFailure, match="TemplateLimit: a number of more than 4096 bits"):
        templates.render({"email": {"default": {"text": source}}}, "email", "sla.breached", context)
