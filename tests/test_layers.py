"""The architecture as the imports show it: detectors under the auditor, the auditor under the
service, no cycles between the detectors' modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Modules a file imports (with ``top_level_only``: at module level, outside functions and
    ``if TYPE_CHECKING`` blocks)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", package_files("detectors"), ids=lambda p: str(p.relative_to(ROOT)))
def test_detectors_import_nothing_above_them(path):
    above = {m for m in imports(path) if m.split(".")[0] in ("auditor", "api")}
    assert not above, f"{path.name} imports {above}"


@pytest.mark.parametrize("path", package_files("auditor"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_auditor_does_not_import_the_service_at_module_level(path):
    service = {m for m in imports(path, top_level_only=True) if m.split(".")[0] == "api"}
    assert not service, f"{path.name} imports {service} when it is imported"


def test_importing_the_command_line_loads_no_service_module():
    code = "import sys, auditor.cli, auditor.auditing, auditor.gate; print(sorted(m for m in sys.modules if m == 'api' or m.startswith('api.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_minhash_and_the_reference_index_do_not_import_each_other():
    minhash = imports(ROOT / "detectors" / "minhash.py")
    reference = imports(ROOT / "detectors" / "reference.py")
    assert "detectors.reference" not in minhash and "detectors.minhash" in reference


def test_service_settings_live_in_the_service():
    from api.settings import ServiceSettings
    from auditor.config import Settings

    assert "database_url" not in Settings.model_fields and "database_url" in ServiceSettings.model_fields


TRAINING = ("auditor.training", "auditor.corpus", "auditor.features")  # fitting models, their data


@pytest.mark.parametrize("path", package_files("auditor/scoring"), ids=lambda p: str(p.relative_to(ROOT)))
def test_scoring_only_loads_models_it_never_trains_them(path):
    """Scoring loads a fitted model (``auditor train``, scripts/train_fast_model.py make them); it
    imports nothing of training, not even inside a function."""
    training = {m for m in imports(path) if m.startswith(TRAINING)}
    assert not training, f"{path.name} imports {training}"


def test_importing_scoring_loads_no_training_module():
    code = "import sys, auditor.scoring; print(sorted(m for m in sys.modules if m.startswith({TRAINING!r})))"
    done = subprocess.run(
        [sys.executable, "-c", code.format(TRAINING=TRAINING)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


# The auditor's modules and sub-packages, lowest first. A unit imports units of lower layers only
# (at any level: module top, inside functions, under ``if TYPE_CHECKING``), never one of its own
# layer or above; ``auditor/__init__.py`` is the facade over the top and is not a unit.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "execution", "reader", "stats"),  # settings, where work runs, reading deliveries, statistics
    ("calibration", "corpus", "features", "tasks"),  # thresholds and rates; training data; task references
    ("scoring", "training"),  # score texts with a fitted model / fit one
    ("estimate",),  # prevalence estimates from scores
    ("report",),  # the report's models and renderings
    ("diversity",),  # per-vendor diversity (fills the report's model)
    ("auditing", "gate"),  # run an audit / the pre-training gate
    ("python_api",),  # audit() and score() from Python
    ("cli",),  # the command line
)
LAYER = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    """``auditor/<unit>.py`` or ``auditor/<unit>/...``: the unit ``path`` belongs to."""
    parts = path.relative_to(ROOT / "auditor").parts
    return parts[0] if len(parts) > 1 else path.stem


AUDITOR_FILES = [p for p in package_files("auditor") if p != ROOT / "auditor" / "__init__.py"]


def test_every_unit_of_the_auditor_has_a_layer():
    units = {unit_of(p) for p in AUDITOR_FILES}
    assert units == set(LAYER), f"without a layer: {units - set(LAYER)}; gone: {set(LAYER) - units}"


@pytest.mark.parametrize("path", AUDITOR_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unit_imports_one_of_its_layer_or_above(path):
    unit = unit_of(path)
    imported = {m.split(".")[1] for m in imports(path) if m.startswith("auditor.")} - {unit}
    above = {u for u in imported if LAYER.get(u, len(LAYERS)) >= LAYER[unit]}
    assert not above, f"{unit} (layer {LAYER[unit]}) imports {sorted(above)}"


NOT_MIRRORS = {
    "fixtures": "data the tests read",
    "reliability": "fault scenarios against the whole service (processes, database, Redis)",
}


def test_tests_mirror_the_packages():
    """Every directory of tests/ is a package's (tests/auditor is auditor/, tests/api/... is api/...),
    apart from the few named in NOT_MIRRORS; and every top-level package has its tests/ directory."""
    tests = ROOT / "tests"
    for directory in sorted(d for d in tests.rglob("*") if d.is_dir() and d.name != "__pycache__"):
        relative = directory.relative_to(tests)
        if relative.parts[0] in NOT_MIRRORS:
            continue
        assert (ROOT / relative / "__init__.py").is_file(), f"tests/{relative} mirrors no package"
    for package in ("auditor", "detectors", "api"):
        assert (tests / package).is_dir(), f"tests/{package} is missing"
