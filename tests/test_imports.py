"""The package's import graph has no cycle.

Every `import` in `analysis/` is read with `ast` (module level and inside functions, absolute
and relative; `from . import x` is an edge to `analysis.x`), giving a directed graph on the
package's modules; a cycle in it (a module that, through its imports, imports itself) fails the
test, which prints the cycle. A package's own `__init__` is not an edge of its submodules (Python
runs it first whatever the submodule imports).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "analysis"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """{module: the package modules it imports}, from every import statement in the package.

    `import a.b.c` and `from a.b import c` are edges to the longest of `a.b.c`, `a.b`, `a`
    that is a module of the package; relative imports are resolved against the importing
    module's package. Imports of anything outside the package are left out, and so is a
    module's edge to a package that contains it (Python runs it first in any case).
    """
    files = sorted((root / package).rglob("*.py"))
    modules = {_module_name(p, root): p for p in files}

    def resolve(dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts:
            name = ".".join(parts)
            if name in modules:
                return name
            parts.pop()
        return None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(resolve(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base_parts = here[: len(here) - node.level + 1] if node.level else []
                base = ".".join(base_parts + ([node.module] if node.module else []))
                for alias in node.names:
                    targets.add(resolve(f"{base}.{alias.name}") or resolve(base))
        targets.discard(None)
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle [a, b, ..., a] of the directed graph, or None when it has none (depth-first
    search: a cycle is an edge back to a node still on the search path)."""
    on_path: list[str] = []
    state: dict[str, str] = {}  # node -> "open" (on the path) or "done"

    def visit(node):
        state[node] = "open"
        on_path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return on_path[on_path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        on_path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_imports_have_no_cycle():
    graph = import_graph()
    assert {"analysis", "analysis._sweep", "analysis.plotting.convergence"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    acyclic = {"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert find_cycle(acyclic) is None
    planted = {**acyclic, "c": {"d"}}  # a -> b -> c -> d -> a
    cycle = find_cycle(planted)
    assert cycle[0] == cycle[-1] and len(cycle) == 5
    assert all(b in planted[a] for a, b in zip(cycle, cycle[1:], strict=False))
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


def test_import_graph_reads_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .b import thing\nimport os\n")
    (pkg / "b.py").write_text("def f():\n    import pkg.sub.c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\nfrom ..sub import d\nfrom pkg import b\n")
    (pkg / "sub" / "d.py").write_text("from pkg import sub\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a", "pkg.sub.d", "pkg.b"},
        "pkg.sub.d": set(),
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
