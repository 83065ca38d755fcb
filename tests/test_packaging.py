"""The wheel installs under its own name, ships registry.json, and its only
top-level packages are zoo and zoo_cli."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

DISTRIBUTION = "tfod-zoo"
TOP_LEVEL = {"zoo", "zoo_cli"}


def test_no_other_distribution_provides_our_packages():
    owners = importlib.metadata.packages_distributions()
    for package in TOP_LEVEL:
        others = set(owners.get(package, [])) - {DISTRIBUTION}
        assert not others, f"{', '.join(sorted(others))} also install(s) a top-level '{package}' package"


def test_the_editable_install_maps_cli_to_zoo_cli(tmp_path: Path):
    # Run from elsewhere, so the checkout's own folder is not on sys.path.
    probe = subprocess.run(
        [sys.executable, "-c", "import zoo_cli.main, importlib.util as u; print(zoo_cli.main.__file__, u.find_spec('cli'))"],
        cwd=tmp_path, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert probe == [str(ROOT / "cli" / "main.py"), "None"]


def test_every_readme_install_line_names_this_distribution():
    # `pip install zoo` installs an unrelated project of that name.
    installs = re.findall(r"pip install ([^`\n&#]+)", (ROOT / "README.md").read_text())
    targets = [word.strip("'\"") for line in installs for word in line.split() if not word.startswith("-")]
    assert "tfod-zoo" in targets
    assert not [t for t in targets if re.match(r"zoo(\[|$)", t)], targets  # the unrelated project


def test_the_checkout_finds_its_registry():
    from zoo.registry import builtin_registry_path

    assert builtin_registry_path().resolve() == ROOT / "registry.json"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("tfod_zoo-*.whl")
    return built


def test_the_wheel_carries_the_registry_and_type_marker(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    assert "zoo/registry.json" in names and "zoo/py.typed" in names
    assert "zoo_cli/main.py" in names
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == TOP_LEVEL
    assert "tfod_zoo-0.1.0.dist-info/licenses/LICENSE" in names
    sources = {f"zoo/{p.relative_to(ROOT / 'zoo').as_posix()}" for p in (ROOT / "zoo").rglob("*.py")}
    sources |= {f"zoo_cli/{p.relative_to(ROOT / 'cli').as_posix()}" for p in (ROOT / "cli").rglob("*.py")}
    assert sources <= set(names), sorted(sources - set(names))
    assert zipfile.ZipFile(wheel).read("zoo/registry.json") == (ROOT / "registry.json").read_bytes()


def test_installed_wheel_lists_models_from_a_fresh_venv(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # Dependencies come from this environment's site-packages (no download);
    # a path added by a .pth file is not scanned for .pth files itself, so this
    # checkout's editable install stays invisible to the fresh venv.
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(fresh_site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    listed = subprocess.run(
        [str(venv / "bin" / "zoo"), "list", "--family", "tf2-classification"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 15  # a header row, then 14 models
    where = subprocess.run(
        [str(python), "-c", "from zoo.registry import builtin_registry_path as p; print(p())"],
        cwd=tmp_path, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert where == str(Path(fresh_site) / "zoo" / "registry.json")
