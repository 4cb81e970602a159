"""The simulator's package data is what ships: every pattern names files that exist."""

import tomllib
from pathlib import Path

import simulator

ROOT = Path(__file__).resolve().parents[2]


def test_every_simulator_package_data_pattern_matches_a_file():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["simulator"]
    package = Path(simulator.__file__).parent
    assert package == ROOT / "simulator"
    for pattern in patterns:
        assert [p for p in package.glob(pattern) if p.is_file()], f"{pattern} ships nothing"
    # What simulate needs at run time is covered.
    needed_files = ("default.toml", "touchless.toml", "spec/synq-lockers-api.yaml")
    web = ("web/static/index.html", "web/static/app.js", "web/static/style.css")
    scenarios = tuple(f"scenarios/{p.name}" for p in (package / "scenarios").glob("*.toml"))
    for needed in needed_files + web + scenarios:
        assert any((package / needed).match(pattern) for pattern in patterns), needed
