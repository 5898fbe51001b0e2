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


# Options that several commands take under one name with a different default or meaning in each (e.g. --out is a
# run directory for train and a folder of pictures for detect); every other option is declared in one place.
ONE_NAME_SEVERAL_OPTIONS = {"--out", "--batch-size", "--method", "--temperature", "--resume", "--n",
                            "--num-classes", "--input-size", "--index", "--image", "--class", "--alpha"}


def option_declarations(folder: Path) -> dict[str, list[str]]:
    """Each long option that an `add_argument` call of the folder's modules names → where it is declared."""
    places: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
                    and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("--")):
                places.setdefault(node.args[0].value, []).append(f"{path.name}:{node.lineno}")
    return places


def test_the_commands_declare_each_shared_option_once():
    """--device, --json, --data-dir, --split, ... are declared in cli/arguments.py and reused, so that they take
    the same values and say the same thing in every command."""
    repeated = {flag: places for flag, places in option_declarations(PACKAGE / "cli").items()
                if len(places) > 1 and flag not in ONE_NAME_SEVERAL_OPTIONS}
    assert repeated == {}


def test_option_declarations_sees_every_call(tmp_path):
    (tmp_path / "a.py").write_text('p.add_argument("--device", choices=("cpu",))\n')
    (tmp_path / "b.py").write_text('def add(g):\n    g.add_argument("--device")\n    g.add_argument("name")\n')
    assert option_declarations(tmp_path) == {"--device": ["a.py:1", "b.py:2"]}
