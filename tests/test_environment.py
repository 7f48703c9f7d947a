"""The repository's set-up files agree with each other: environment.yml, pyproject.toml, .ci/run, README."""

import re
import tomllib

import pytest

from helpers import REPO

CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def package_name(requirement):
    """The normalised package name of a requirement such as ``torch>=2.1`` or ``Foo_Bar[x]==1``."""
    name = re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_dependencies(text):
    """The string entries of environment.yml's top-level ``dependencies:`` list, read line by line."""
    entries, inside = [], False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):  # a top-level key
            inside = line.startswith("dependencies:")
        elif inside and line.startswith("  - ") and not line.rstrip().endswith(":"):
            entries.append(line[4:].strip())
    return entries


def conda_dependencies(text):
    """The ``dependencies:`` entries of environment.yml (PyYAML if installed, else the line parser)."""
    try:
        import yaml
    except ImportError:
        return parse_dependencies(text)
    entries = yaml.safe_load(text)["dependencies"]
    return [entry for entry in entries if isinstance(entry, str)]  # {pip: [...]} holds only "--editable ."


def test_environment_yml_and_pyproject_name_the_same_packages():
    """Every package of pyproject.toml (dependencies and extras) is in environment.yml, and nothing else."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    self_name = package_name(project["name"])
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    pip_names = {package_name(r) for r in requirements} - {self_name}

    conda_names = set()
    for entry in conda_dependencies((REPO / "environment.yml").read_text()):
        if entry.startswith("-"):  # pip options such as "--editable ."
            continue
        name = package_name(entry)
        conda_names.add(CONDA_TO_PIP.get(name, name))
    conda_names -= NOT_PACKAGES

    assert conda_names == pip_names, (
        f"only in environment.yml: {sorted(conda_names - pip_names)}; "
        f"only in pyproject.toml: {sorted(pip_names - conda_names)}"
    )


def test_line_parser_agrees_with_yaml():
    """The fallback line parser of environment.yml reads the same packages as PyYAML."""
    yaml = pytest.importorskip("yaml")
    text = (REPO / "environment.yml").read_text()
    by_line = parse_dependencies(text)
    by_yaml = [entry for entry in yaml.safe_load(text)["dependencies"] if isinstance(entry, str)]
    assert by_line == by_yaml


def test_environment_yml_installs_the_course_package():
    """environment.yml installs this repository with pip (editable)."""
    assert "--editable ." in (REPO / "environment.yml").read_text()


def test_ci_runs_make_test():
    """.ci/run is executable and runs ``make test``, the developer's command."""
    ci = REPO / ".ci" / "run"
    assert ci.stat().st_mode & 0o111, ".ci/run is not executable"
    commands = [
        line.strip() for line in ci.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert "make test" in commands


def test_makefile_has_reference_and_test():
    """The Makefile defines the two entry points, ``reference`` and ``test``."""
    targets = re.findall(r"^([A-Za-z_-]+):", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert "reference" in targets and "test" in targets


def test_readme_mentions_make_commands():
    """README.md tells the reader about ``make reference`` and ``make test``."""
    readme = REPO / "README.md"
    if not readme.is_file():
        pytest.skip("README.md does not exist yet")
    text = readme.read_text()
    assert "make reference" in text and "make test" in text
