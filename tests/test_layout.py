"""The package layout: one place per role, imports flowing one way.

Every import in the package is checked, the ones inside functions too, so a
function-local import cannot hide an upward dependency (a cycle).
"""
import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"ros_pgpt": REPO_ROOT / "ros_pgpt", "ros_pgpt.export": REPO_ROOT / "export"}

# role -> the roles it may import (besides itself). The export sits under inference: the engines
# read what it writes and a backend exports a checkpoint on first use, while the exporter needs only
# the model, the data's letterbox and geometry, and its own manifest format.
ALLOWED = {
    "checkpoints": set(),
    "model": set(),
    "data": {"model"},
    "export": {"model", "data", "checkpoints"},
    "inference": {"model", "data", "export", "checkpoints"},
    "training": {"model", "data", "inference", "checkpoints"},
    "ros": {"model", "data", "inference", "export", "checkpoints", "msg", "srv"},
    "tools": {"model", "data", "inference", "export", "training", "ros", "checkpoints", "msg", "srv"},
}
TOP_LEVEL = {"__init__", "__main__", "cli"}  # the package's face: version, the lazy command table


def _modules():
    for package, root in PACKAGE_DIRS.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[0] in ("msg", "srv") or "__pycache__" in parts:
                continue
            yield ".".join((package,) + parts), path


def _role(module: str) -> str | None:
    if module.startswith("ros_pgpt.export"):
        return "export"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(module: str, path: Path):
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ros_pgpt":  # "from ros_pgpt import x": x names the module
                for alias in node.names:
                    if not alias.name.startswith("__"):  # __version__ is no module
                        yield node.lineno, f"ros_pgpt.{alias.name}"
            else:
                yield node.lineno, target


MODULES = list(_modules())


def test_every_module_has_a_role():
    loose = [m for m, _ in MODULES if _role(m) not in ALLOWED and m.split(".")[-1] not in TOP_LEVEL]
    assert not loose, f"modules outside the role packages {sorted(ALLOWED)}: {loose}"


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_flow_one_way(module, path):
    role = _role(module)
    if role not in ALLOWED:
        return  # the top level (cli dispatches by name, never by import)
    upward = []
    for line, target in _imports(module, path):
        if target == "ros_pgpt" or not target.startswith("ros_pgpt."):
            continue
        other = _role(target)
        if other != role and other not in ALLOWED[role]:
            upward.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {target} ({role} -> {other})")
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from ros_pgpt.ros.worker import Busy\n")
    assert list(_imports("ros_pgpt.model.bad", path)) == [(2, "ros_pgpt.ros.worker")]
    assert "ros" not in ALLOWED["model"]


def _module_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (any import, function-local ones too)."""
    modules = dict(MODULES)

    def owner(target: str) -> str | None:  # "ros_pgpt.data.scenes.COLOURS" -> "ros_pgpt.data.scenes"
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph = {}
    for module, path in MODULES:
        targets = {owner(t) for _, t in _imports(module, path) if t.startswith("ros_pgpt.")}
        # a module importing its own package (its __init__) is no cycle
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_even_through_local_imports():
    assert not _cycles(_module_graph()), "modules importing each other (a local import only hides the cycle)"


def test_the_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
