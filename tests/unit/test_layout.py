"""The layout's promises, kept by a test: no import cycles between regops modules, no
`sys.path` edits anywhere, every `tasks/` concern documented in the README."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "regops"


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports() -> dict[str, set[str]]:
    """Module -> the regops modules it imports at import time (top level)."""
    known = {_module(p) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("regops"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in known else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("regops"))
        graph[_module(path)] = deps & known
    return graph


def test_no_import_cycles():
    graph = _imports()
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            assert state.get(dep) != 1, " -> ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_nothing_edits_sys_path():
    files = [ROOT / "deploy.py", *(p for d in ("regops", "tests", "bench", "inventories")
                                   for p in (ROOT / d).rglob("*.py"))]
    offenders = [str(f.relative_to(ROOT)) for f in files
                 if "sys.path." in f.read_text() and f.name != "test_layout.py"]
    assert offenders == []


def test_every_task_module_is_in_the_deploy_and_the_readme():
    site = (PACKAGE / "deploys" / "site.py").read_text()
    readme = (ROOT / "README.md").read_text()
    for task in sorted((PACKAGE / "tasks").glob("*.py")):
        if task.name == "__init__.py":
            continue
        assert f"{task.stem}.apply(settings)" in site, task.stem
        assert f"`regops/tasks/{task.name}`" in readme, task.stem

