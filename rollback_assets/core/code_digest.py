"""Content hashes of code: a module and everything it imports from this package (its import closure).

Why the closure: an asset's `code_version` and the policy version must change when any code they run
changes. Naming the modules by hand missed `stats` and `sequential_policy` under `rollback_decisions`,
so a changed statistic reproduced the old decision ids. The closure is read from the source (every
`import`, including those inside functions), so a module added or moved is covered without a list to
keep up to date.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "rollback_assets"
_ROOT = Path(__file__).resolve().parents[1]


def module_file(name: str) -> Path | None:
    """The source file of a module of this package, or None when `name` is not one."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = _ROOT.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def imports_of(name: str) -> frozenset[str]:
    """The modules of this package that `name` imports, anywhere in its source (parent packages included:
    importing a module runs their `__init__`)."""
    path = module_file(name)
    if path is None:
        return frozenset()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    modules = {m for m in found if module_file(m) is not None}
    return frozenset(modules | {p for m in modules for p in _parents(m)})


def import_closure(*names: str) -> list[str]:
    """`names` and every module of this package they import, directly or not, sorted."""
    seen: set[str] = set()
    todo = [n for n in names if module_file(n) is not None]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports_of(name) - seen)
    return sorted(seen)


def source_digest(name: str) -> str:
    """Hash of one module's source (a test replaces it to simulate an edit)."""
    return hashlib.sha256(module_file(name).read_bytes()).hexdigest()


def closure_digest(*names: str) -> str:
    """One hash over the sources of the import closure of `names`: changes when any of them changes."""
    digest = hashlib.sha256()
    for name in import_closure(*names):
        digest.update(f"{name}\0{source_digest(name)}\0".encode())
    return digest.hexdigest()


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]
