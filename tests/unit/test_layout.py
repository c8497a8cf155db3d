"""The layout's promises, kept by a test: no import cycles, no `sys.path` edits, the
packages shipped to hosts import only what hosts have, tests import helpers from
`tests/support` and never another test module, a module name means one thing, and
every deploy task is in the deploy."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "regops"
PACKAGES = ("regops", "regops_token", "regops_host")

# What the token service may import besides the standard library: Debian packages
# (python3-cryptography, python3-bcrypt, python3-jinja2, python3-ldap3), because hosts install
# nothing from PyPI.
TOKEN_THIRD_PARTY = {"cryptography", "bcrypt", "jinja2", "markupsafe", "ldap3", "jwt"}

# Module names found in more than one package, each with its one meaning. A new
# name used twice must be added here with what it means in every place, or renamed.
SHARED_NAMES = {
    "__init__": "a package", "__main__": "`python -m` of its package",
    "cron": "cron schedules (the GC job's), parsed the one way",
    "docker": "the Docker engine (installed on hosts; driven for sandboxes)",
    "facts": "what is read off a host",
    "images": "images in a registry (manifests and sizes; the CLI group)",
    "gc": "garbage collection (deploy task, day-2 command, host job)",
    "hosts": "hosts (the CLI group, sandbox hosts)",
    "model": "the data types of its package",
    "oidc": "single sign-on by OpenID Connect (registry_oidc checked; the token service's client)",
    "seaweedfs": "SeaweedFS storage hosts (what runs where; the deploy task)",
    "tls": "TLS (the host's certificates; the front door's protocols checked)",
    "trust": "clients trusting a registry (deploy file, day-2 command)",
    "users": "registry users (deploy file, day-2 command)",
}


def _modules(*packages: str) -> list[Path]:
    return [p for name in packages if (ROOT / name).is_dir() for p in (ROOT / name).rglob("*.py")]


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _top_imports(path: Path, everywhere: bool = False) -> set[str]:
    """Modules `path` imports (at its top level, or anywhere with `everywhere`)."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports at import time (top level)."""
    files = _modules(*PACKAGES)
    known = {_module(p) for p in files}
    return {_module(p): _top_imports(p) & known for p in files}


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
    files = [ROOT / "deploy.py", *(p for d in ("regops", "regops_token", "regops_host", "tests",
                                               "bench", "inventories")
                                   for p in (ROOT / d).rglob("*.py"))]
    offenders = [str(f.relative_to(ROOT)) for f in files
                 if "sys.path." in f.read_text() and f.name != "test_layout.py"]
    assert offenders == []


def _roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _top_imports(path, everywhere=True)}


def test_the_token_service_imports_nothing_from_regops_and_only_debian_packages():
    allowed = set(sys.stdlib_module_names) | TOKEN_THIRD_PARTY | {"regops_token"}
    offenders = {str(p.relative_to(ROOT)): sorted(_roots(p) - allowed)
                 for p in _modules("regops_token") if _roots(p) - allowed}
    assert offenders == {}


def test_host_logic_imports_only_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"regops_host"}
    offenders = {str(p.relative_to(ROOT)): sorted(_roots(p) - allowed)
                 for p in _modules("regops_host") if _roots(p) - allowed}
    assert offenders == {}


def test_no_test_module_imports_another_test_module():
    offenders = {}
    for path in (ROOT / "tests").rglob("*.py"):
        bad = sorted(name for name in _top_imports(path, everywhere=True)
                     if name.split(".")[0] == "tests" and name != "tests"
                     and not name.startswith("tests.support"))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    for path in (ROOT / "bench").rglob("*.py"):
        bad = sorted(name for name in _top_imports(path, everywhere=True)
                     if name.startswith("tests.") and not name.startswith("tests.support"))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_a_module_name_used_in_two_packages_has_one_meaning():
    seen: dict[str, list[str]] = {}
    for path in _modules(*PACKAGES):
        seen.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    shared = {name for name, where in seen.items() if len(where) > 1}
    unexplained = {name: seen[name] for name in shared - set(SHARED_NAMES)}
    assert unexplained == {}, "name its one meaning in SHARED_NAMES, or rename"


def test_no_package_holds_a_second_name_for_pyinfra_code():
    """pyinfra code lives in `regops/deploy/` only (deploy files, facts, operations,
    units, rendering, tasks), never in a `deploys/` or top-level `tasks/` beside it."""
    for old in ("deploys", "tasks"):
        assert not (PACKAGE / old).exists(), old
    outside = [str(p.relative_to(ROOT)) for p in _modules("regops")
               if not p.is_relative_to(PACKAGE / "deploy")
               and any(n.startswith(("pyinfra.api", "pyinfra.operations"))
                       for n in _top_imports(p, everywhere=True))]
    assert outside == []


def test_every_task_module_is_in_the_deploy_and_the_layout_guide():
    site = (PACKAGE / "deploy" / "site.py").read_text()
    guide = (ROOT / "CONTRIBUTING.md").read_text()
    for task in sorted((PACKAGE / "deploy" / "tasks").glob("*.py")):
        if task.name == "__init__.py":
            continue
        assert f"{task.stem}.apply(settings)" in site, task.stem
        assert f"`{task.stem}`" in guide, task.stem
