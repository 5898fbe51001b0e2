"""The package's layers import only downwards (docs/architecture.md): every import statement of
every module, those inside functions included, is checked against the order below."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import visionzoo

PACKAGE = Path(visionzoo.__file__).parent
# Bottom to top; a part may import its own layer and the layers below it.
LAYERS = [
    {"core"},
    {"layers", "metrics"},
    {"models", "registry", "weights"},
    {"data"},
    {"attacks"},
    {"tasks"},
    {"engine"},
    {"explain", "compress", "bench"},
    {"experiments"},
    {"cli", "__main__", "__init__"},
]
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """'visionzoo.engine.trainer' → 'engine'; the package itself → '__init__'."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - node.level + 1])
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name == "visionzoo" or name.startswith("visionzoo.")]
    return found


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        here = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else "__init__"
        if here not in LEVEL:
            problems.append(f"{rel}: part {here!r} has no place in LAYERS")
            continue
        for line, target in _imports(path):
            there = _part(target)
            if there not in LEVEL:
                problems.append(f"{rel}:{line} imports {target}, which has no place in LAYERS")
            elif LEVEL[there] > LEVEL[here]:
                problems.append(f"{rel}:{line} ({here}) imports {target} ({there}), a layer above")
    return problems


def test_imports_point_down():
    assert upward_imports() == []


def test_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    fake = tmp_path / "visionzoo"
    (fake / "layers").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "layers" / "__init__.py").write_text("")
    (fake / "layers" / "bad.py").write_text("def f():\n    from ..engine import trainer\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert upward_imports() == ["layers/bad.py:2 (layers) imports visionzoo.engine (engine), a layer above"]


def test_core_imports_nothing_of_visionzoo_outside_it():
    for path in (PACKAGE / "core").rglob("*.py"):
        assert all(_part(target) == "core" for _, target in _imports(path)), path


def test_the_command_starts_without_importing_torchvision():
    """torchvision's import (it pulls in torch._dynamo) adds about a second: the commands that use it import it."""
    check = "import sys; import visionzoo; from visionzoo.cli.main import main; print('torchvision' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
