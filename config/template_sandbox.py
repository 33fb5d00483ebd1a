"""The sandbox templates render in: Jinja2's `SandboxedEnvironment` with limits against accidents
and mischief in a policy.

A template sees plain data only. Loops share a budget of iterations per render, string growth
(`~`, `*`, `+`, `%`, widening filters and methods) is refused beyond `MAX_OUTPUT`, numbers beyond
`MAX_INT_BITS`, the output is cut off at `MAX_OUTPUT`, and a render is stopped once it has taken
longer than `RENDER_SECONDS`: every loop item, call, operator and output chunk checks the deadline,
and each of those steps is bounded by the size limits, so no render runs on unchecked. A template
that breaks a limit fails like any other template error: naming the template and the line.
"""

from __future__ import annotations

import contextvars
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import FunctionLoader, StrictUndefined, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT = 256 * 1024  # characters per rendered part
MAX_ITERATIONS = 20_000  # loop items per render, all loops together
MAX_INT_BITS = 4096  # numbers a template computes
RENDER_SECONDS = 2.0


class TemplateLimit(SecurityError):
    """A sandbox limit was hit (size, iterations, time)."""


class TemplateFailure(Exception):
    """A template that cannot be rendered: `name` and `line` say where."""

    def __init__(self, name: str, line: int | None, message: str) -> None:
        self.name, self.line, self.message = name, line, message
        where = f"{name}, line {line}" if line else name
        super().__init__(f"{where}: {message}")


class TemplateTimeout(TemplateLimit):
    """A render went on past its deadline."""


@dataclass
class _Budget:
    iterations: int
    deadline: float


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


_WIDENING = frozenset({"format", "format_map", "center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join"})


def _tick() -> None:
    """Stop the render once its deadline has passed."""
    budget = _budget.get(None)
    if budget is not None and time.monotonic() > budget.deadline:
        raise TemplateTimeout(f"took longer than {RENDER_SECONDS:g} s")


def _spend(n: int) -> None:
    budget = _budget.get(None)
    if budget is None:
        return
    budget.iterations -= n
    if budget.iterations < 0:
        raise TemplateLimit(f"more than {MAX_ITERATIONS} loop iterations")
    _tick()


def _checked(value: Any) -> Any:
    _tick()
    if isinstance(value, str | list | tuple) and len(value) > MAX_OUTPUT:
        raise TemplateLimit(f"a value longer than {MAX_OUTPUT} characters")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"a number of more than {MAX_INT_BITS} bits")
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
        _tick()  # macros call themselves without a loop
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


def _line_of(exc: BaseException, name: str) -> int | None:
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == name:
            line = frame.lineno
    return line


def render_one(name: str, source: str, context: dict[str, Any]) -> str:
    """One template rendered within the limits; raises `TemplateFailure` naming the template."""
    sources = {name: source}

    def work() -> str:
        _SOURCES.set(sources)
        _budget.set(_Budget(MAX_ITERATIONS, time.monotonic() + RENDER_SECONDS))
        template = _ENV.get_template(name)
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            _tick()
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimit(f"output longer than {MAX_OUTPUT} characters")
            out.append(chunk)
        return "".join(out)

    try:
        return contextvars.Context().run(work)
    except TemplateTimeout:
        raise TemplateFailure(name, None, f"took longer than {RENDER_SECONDS:g} s (stopped)") from None
    except TemplateSyntaxError as error:
        raise TemplateFailure(name, error.lineno, f"syntax error: {error.message}") from None
    except Exception as error:
        raise TemplateFailure(name, _line_of(error, name), f"{type(error).__name__}: {error}"[:300]) from None
