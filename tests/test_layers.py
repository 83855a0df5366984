"""The layers of docs/architecture.md, checked on the source: imports point down only, and the bottom layer
and the CLI import nothing heavy when they are imported."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> the thce packages (other than itself) it may import
ALLOWED = {
    "utils": set(),
    "retrieval": {"utils"},
    "data": {"retrieval", "utils"},
    "post_training": {"retrieval", "utils"},
    "inference": {"retrieval", "utils"},
    "evaluation": {"inference", "retrieval", "utils"},  # evaluation runs a model through the Predictor
}
CLI = {"cli", "commands", "pipeline"}  # thce.cli, thce.commands.*, thce.pipeline: the top layer
HEAVY = {"torch", "transformers", "trl", "datasets", "peft", "accelerate"}


def _imports(path: Path, module_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_point_down_only(folder):
    assert _sources(folder), folder
    wrong = []
    for path in _sources(folder):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "thce" or len(parts) < 2 or parts[1] == folder:
                continue
            if parts[1] in CLI or parts[1] not in ALLOWED[folder]:
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_metrics_normalise_codes_without_the_inference_layer():
    assert not [n for n in _imports(REPO / "evaluation" / "metrics.py") if n.startswith("thce.inference")]


@pytest.mark.parametrize("folder", ["utils", "retrieval", "thce"])
def test_no_heavy_import_at_module_level(folder):
    heavy = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in _sources(folder)
        for name in _imports(path, module_level_only=True)
        if name.split(".")[0] in HEAVY
    ]
    assert not heavy, "\n".join(heavy)


def test_no_module_cites_a_path_outside_the_repo():
    cited = [
        str(path.relative_to(REPO))
        for folder in (*ALLOWED, "thce", "scripts", "configs")
        for path in (REPO / folder).rglob("*")
        if path.suffix in (".py", ".yaml", ".md") and "../shared" in path.read_text(encoding="utf-8")
    ]
    assert not cited
