"""The package's import graph: no cycles, and the records module stays free of torch."""

import ast
import subprocess
import sys
from pathlib import Path

import dcgan_features

PACKAGE = Path(dcgan_features.__file__).parent


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports (at any depth of its code, lazy imports included).

    ``from .x import y`` counts as importing ``x`` (and ``x.y`` when that is a module); a
    package's ``__init__`` importing its own submodules is not an edge back.
    """
    mods = {}
    for p in root.rglob("*.py"):
        name = ".".join((root.name,) + p.relative_to(root).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        here = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = here[:len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {c for c in names if c in mods and c != m and not c.startswith(m + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if not state.get(v) and (cycle := visit(v)):
                return cycle
        state[u] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if not state.get(m) and (cycle := visit(m)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "dcgan_features.probes.newton" in graph["dcgan_features.probes.estimators"]  # the walk sees edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_records_are_formatted_without_torch():
    code = "import sys, dcgan_features.probes.records; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _code_map() -> dict[str, int]:
    """README's code map: module -> its row (0 = top), read from the table's backquoted names."""
    import re

    text = (PACKAGE.parent / "README.md").read_text()
    table = text[text.index("## Code map"):].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| stage")]
    out = {}
    for i, line in enumerate(rows):
        package = None
        for name in re.findall(r"`([\w/.]+)`", line):
            if name.endswith(".py"):
                out[f"{PACKAGE.name}.{name[:-3].replace('/', '.')}"] = i
            elif name.endswith("/"):
                package = f"{PACKAGE.name}.{name[:-1]}"
                out[package] = i
            elif package is not None and name.islower():  # a module of the subpackage named before it
                out[f"{package}.{name}"] = i
    return out


def test_readme_code_map_matches_the_tree():
    rows, graph = _code_map(), import_graph()
    assert len(rows) > 20
    missing = [m for m in rows if m not in graph]
    assert not missing, f"README's code map names modules that do not exist: {missing}"

    upward = upward_imports(rows, graph)
    assert not upward, f"imports from a row of README's code map to a row below it: {upward}"


def _row_of(rows: dict[str, int], module: str) -> int | None:
    parts = module.split(".")
    return next((rows[".".join(parts[:k])] for k in range(len(parts), 1, -1) if ".".join(parts[:k]) in rows), None)


def upward_imports(rows: dict[str, int], graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where the imported module sits in a lower row than its importer."""
    return [(m, d) for m, deps in graph.items() for d in deps
            if _row_of(rows, m) is not None and _row_of(rows, d) is not None and _row_of(rows, d) > _row_of(rows, m)]


def test_every_module_belongs_to_a_row_of_the_code_map():
    rows = _code_map()
    loose = sorted(m for m in import_graph() if m != PACKAGE.name and _row_of(rows, m) is None)
    assert not loose, f"modules in no row of README's code map (the import-direction check cannot see them): {loose}"


def test_the_core_imports_no_stage():
    core = f"{PACKAGE.name}.core"
    out = [(m, d) for m, deps in import_graph().items() if m.startswith(core + ".") or m == core
           for d in deps if not d.startswith(core) and d != PACKAGE.name]
    assert not out, f"core/ imports a stage: {out}"


def test_an_upward_import_is_caught():
    rows = {"p.core": 0, "p.data": 1}
    graph = {"p.core.errors": {"p.data.registry"}, "p.data.registry": {"p.core.errors"}}
    assert upward_imports(rows, graph) == [("p.core.errors", "p.data.registry")]
