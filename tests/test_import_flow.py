"""No import goes back up the flow (ARCHITECTURE.md): a package imports only packages before it, never one after it,
so there is no cycle between packages. feeds/, pulse/ and remits/ are peers: none imports another (intake/, after both,
decides which of them reads a file).

Every module's imports are read with `ast`, function-level ones too (a deferred import is still a dependency).
`python -m tests.test_import_flow` prints the package graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The flow, earliest first; packages on one line are peers.
FLOW: list[tuple[str, ...]] = [
    ("config",), ("storage",), ("feeds", "pulse", "remits"), ("intake",), ("alerts",), ("digest",), ("tasks",),
    ("worker",),
]
RANK = {package: rank for rank, peers in enumerate(FLOW) for package in peers}

Edges = dict[tuple[str, str], list[str]]


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree, nested ones included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def package_edges(root: Path = ROOT) -> Edges:
    """(importer, imported) package -> where ('path:line module'), for imports between two of our packages."""
    edges: Edges = defaultdict(list)
    for package in RANK:
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                target = module.split(".")[0]
                if target in RANK and target != package:
                    edges[(package, target)].append(f"{path.relative_to(root)}:{line} {module}")
    return dict(edges)


def goes_back_up(importer: str, imported: str) -> bool:
    """Importing a later package, or a peer."""
    return RANK[imported] >= RANK[importer]


def offenders(edges: Edges) -> list[str]:
    return [f"{importer} -> {imported}: {where}" for (importer, imported), places in sorted(edges.items())
            if goes_back_up(importer, imported) for where in places]


def describe(edges: Edges) -> str:
    """The graph, one edge a line in flow order; a backward edge is marked and its imports listed."""
    lines = []
    for importer, imported in sorted(edges, key=lambda edge: (RANK[edge[0]], edge[0], RANK[edge[1]], edge[1])):
        back = goes_back_up(importer, imported)
        lines.append(f"{importer} -> {imported}{'   <- BACK UP THE FLOW' if back else ''}")
        lines += [f"    {where}" for where in edges[(importer, imported)]] if back else []
    return "\n".join(lines)


def test_every_package_of_the_project_is_placed_in_the_flow() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(RANK), f"place these in FLOW: {sorted(packages ^ set(RANK))}"


def test_no_package_imports_one_later_in_the_flow_or_a_peer() -> None:
    found = offenders(package_edges())
    assert not found, "imports going back up the flow:\n" + "\n".join(found)


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    """A deferred import (inside a function) counts like one at the top: it is the same dependency."""
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "late.py").write_text("def f() -> None:\n    from worker.app import app\n")
    assert offenders(package_edges(tmp_path)) == ["storage -> worker: storage/late.py:2 worker.app"]


if __name__ == "__main__":
    print(describe(package_edges()))
