"""The product's imports go one way: no cycle between its modules, and the policy (`config`) stands
below the code that runs it. Every import counts, also one inside a function or under
`TYPE_CHECKING`: a cycle hidden in a function is still a cycle to read through."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("activities", "api", "cli", "config", "review", "store", "workers", "workflows")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [known(f"{node.module}.{a.name}") or known(node.module) for a in node.names]
            graph[name] |= {t for t in targets if t is not None and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_product_modules() -> None:
    graph = _graph()
    assert len(graph) > 50, sorted(graph)  # the walk found the product
    assert _cycles(graph) == []


def test_a_cycle_is_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_policy_imports_no_code_that_runs_it() -> None:
    graph = _graph()
    above = ("activities", "api", "cli", "review", "store", "workers", "workflows")
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.split(".")[0] == "config"
        for target in targets
        if target.split(".")[0] in above
    )
    assert wrong == []


def test_the_messages_are_a_contract_that_needs_no_activity() -> None:
    """Workflows, the record store and the review's watch read activity inputs and outputs from the
    contract modules (`workflows/messages.py`, `workflows/review_messages.py`), never from an activity."""
    graph = _graph()
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.split(".")[0] in ("workflows", "store") or name == "review.watch"
        for target in targets
        if target.split(".")[0] == "activities"
    )
    assert wrong == []
