"""The package's shape, read from its source: no test hook in the product, no function over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dcgan_features"
MAX_LINES = 80

# Environment variables the product may read or set, and why. A fault is injected by the
# tests from outside (tests/faults.py, monkeypatch), never through a variable read here.
ALLOWED_ENV = {
    "RANK": "torchrun: this process's rank",
    "WORLD_SIZE": "torchrun: the number of processes",
    "LOCAL_RANK": "torchrun: this process's GPU on its node",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "set for NCCL collectives inside a CUDA graph",
    "NCCL_ASYNC_ERROR_HANDLING": "the same, older torch",
}

# Functions allowed over MAX_LINES: none. An entry here is a debt with an owner, and the test
# fails once the function is split so the entry cannot outlive it.
LONG_ALLOWED: set[tuple[str, str]] = set()


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ`` (``from os import environ``)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def env_reads(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, variable name) of every environment access in ``tree``; the name is None where
    it is not a string literal (a name held in a constant hides what is read)."""
    found = []

    def key(node: ast.AST | None) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_environ(node.value):  # os.environ["X"]
            found.append((node.lineno, key(node.slice)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if _is_environ(f.value) and f.attr in ("get", "setdefault", "pop", "__getitem__"):  # os.environ.get("X")
                found.append((node.lineno, key(node.args[0]) if node.args else None))
            elif f.attr in ("getenv", "putenv", "unsetenv"):  # os.getenv("X")
                found.append((node.lineno, key(node.args[0]) if node.args else None))
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):  # "X" in os.environ
            found.append((node.lineno, key(node.left)))
    return found


def long_functions(tree: ast.AST, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than ``limit`` lines (def to last line)."""
    return [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit]


def test_no_product_module_reads_a_test_hook_from_the_environment():
    bad = [f"{mod}:{line} reads {name or '(a name that is not a literal)'}"
           for mod, tree in _modules() for line, name in env_reads(tree) if name not in ALLOWED_ENV]
    assert not bad, "environment variables outside the allow-list (inject faults from the tests):\n" + "\n".join(bad)


def test_env_reads_are_found():
    """The walker sees every form of access (else the test above could not fail)."""
    src = ("import os\nfrom os import environ\nK = 'T'\n"
           "a = os.environ.get('A')\nb = os.environ['B']\nc = 'C' in os.environ\nd = os.getenv('D')\n"
           "e = environ.get(K)\nos.environ.setdefault('F', '0')\n")
    assert sorted(env_reads(ast.parse(src)), key=lambda r: r[0]) == [
        (4, "A"), (5, "B"), (6, "C"), (7, "D"), (8, None), (9, "F")]


def test_no_function_over_80_lines():
    found = {(mod, name): n for mod, tree in _modules() for name, n in long_functions(tree)}
    over = [f"{mod}::{name} is {n} lines" for (mod, name), n in found.items() if (mod, name) not in LONG_ALLOWED]
    assert not over, f"functions over {MAX_LINES} lines (split them into named parts):\n" + "\n".join(over)
    stale = LONG_ALLOWED - set(found)
    assert not stale, f"no longer over {MAX_LINES} lines: drop {sorted(stale)} from LONG_ALLOWED"


def test_long_functions_are_measured_def_to_last_line():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))  # def + 80 lines = 81
    assert long_functions(ast.parse(f"def f():\n{body}\n")) == [("f", MAX_LINES + 1)]
    assert long_functions(ast.parse(f"def f():\n{body[:body.rindex(chr(10))]}\n")) == []
