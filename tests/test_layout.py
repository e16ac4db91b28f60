"""The package's architecture, checked: three layers importing only downward, and no import cycle.

`gpt_keras.core` (the lesson) < `gpt_keras.runs` (run directories) < `gpt_keras.tools` (classroom tools
and the command line); the top-level modules (`gpt_keras`, `gpt_keras.callbacks`, `__main__`) are the
public face above all three. Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpt_keras"
LAYERS = {"core": 0, "runs": 1, "tools": 2}
TOP = 3
# What the lesson core may import besides itself: keras, numpy and the standard library; TensorFlow
# where `TextVectorization` and `tf.data` need it; and the backend's own compiler where the cached
# decoder compiles its step (Keras has no public "compile this function" call).
CORE_THIRD_PARTY = {"keras", "numpy"}
CORE_BACKEND_IMPORTS = {"gpt_keras.core.data": {"tensorflow"}, "gpt_keras.core.backend": {"tensorflow", "jax"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every module `name` imports (absolute names), at the top or inside a function."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def project_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    return {target for target in imports_of(name, path) if target in known and target != name}


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def test_every_module_sits_in_a_layer():
    unplaced = [name for name in modules() if name.count(".") >= 2 and name.split(".")[1] not in LAYERS]
    assert not unplaced, f"modules outside core/, runs/ and tools/: {unplaced}"


def test_imports_go_only_downward():
    known = modules()
    upward = [f"{name} imports {target}" for name, path in known.items()
              for target in project_imports(name, path, known) if layer(target) > layer(name)]
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    known = modules()
    graph = {name: {t for t in project_imports(name, path, known) if not _is_package_of(t, name)}
             for name, path in known.items()}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_lesson_core_imports_only_keras_numpy_and_the_standard_library():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for name, path in modules().items():
        if layer(name) != 0:
            continue
        allowed = CORE_THIRD_PARTY | CORE_BACKEND_IMPORTS.get(name, set())
        outside = {target.split(".")[0] for target in imports_of(name, path)} - stdlib - allowed - {"gpt_keras"}
        assert not outside, f"{name} imports {sorted(outside)}"


# The core's speed variants, marked optional in the reading order: counted apart from the lesson.
OPTIONAL_READING = {"fast.py", "backend.py", "checks.py"}


def test_the_lesson_core_is_small_enough_to_read_in_an_afternoon():
    files = [path for path in (PACKAGE / "core").glob("*.py")]
    lesson = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in files
                 if path.name not in OPTIONAL_READING)
    optional = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in files
                   if path.name in OPTIONAL_READING)
    assert {path.name for path in files} >= OPTIONAL_READING
    assert lesson <= 1100, f"the lesson core has {lesson} lines; keep it near 1,000"
    assert optional <= 340, f"the optional speed modules have {optional} lines; keep them short"


def test_the_checks_above_see_a_violation():
    """The graph code finds a cycle and an upward import when there is one (so the tests can fail)."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert layer("gpt_keras.tools.cli") > layer("gpt_keras.runs.train") > layer("gpt_keras.core.model")


def _is_package_of(target: str, name: str) -> bool:
    """`from gpt_keras.runs import rundir` names the package `gpt_keras.runs` too; that is not a dependency."""
    return name.startswith(target + ".")


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if state.get(target) is None:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if state.get(start) is None:
            found = visit(start)
            if found:
                return found
    return None


@pytest.mark.parametrize("name", ["gpt_keras", "gpt_keras.callbacks", "gpt_keras.runs"])
def test_public_entry_points_still_import(name):
    import importlib

    module = importlib.import_module(name)
    assert module is not None


@pytest.mark.slow
def test_the_suite_starts_without_the_shared_reviews(tmp_path):
    """Without ../shared, tests run on the package's sample and only those needing real reviews skip, saying why."""
    import os
    import subprocess

    env = {**os.environ, "GPT_KERAS_SHARED": str(tmp_path / "no-shared"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                             "tests/test_data.py"],
                            cwd=PACKAGE.parent, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "needs the real reviews" in result.stdout and " passed" in result.stdout
