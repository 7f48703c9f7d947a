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
    """environment.yml's ``dependencies:`` as (conda entries, entries of its ``pip:`` list), read line by line."""
    conda, pip, inside, in_pip = [], [], False, False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):  # a top-level key
            inside, in_pip = line.startswith("dependencies:"), False
        elif inside and line.startswith("  - "):
            entry = line[4:].strip()
            in_pip = entry == "pip:"
            if not in_pip:
                conda.append(entry)
        elif inside and in_pip and line.lstrip().startswith("- "):
            pip.append(line.lstrip()[2:].strip())
    return conda, pip


def read_dependencies(text):
    """environment.yml's (conda entries, pip entries): PyYAML if installed, else the line parser."""
    try:
        import yaml
    except ImportError:
        return parse_dependencies(text)
    entries = yaml.safe_load(text)["dependencies"]
    conda = [entry for entry in entries if isinstance(entry, str)]
    pip = [item for entry in entries if isinstance(entry, dict) for item in entry.get("pip", [])]
    return conda, pip


def test_environment_yml_and_pyproject_name_the_same_packages():
    """Every package of pyproject.toml (dependencies and extras) is in environment.yml, and nothing else."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    self_name = package_name(project["name"])
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    pip_names = {package_name(r) for r in requirements} - {self_name}

    conda, pip = read_dependencies((REPO / "environment.yml").read_text())
    listed = {CONDA_TO_PIP.get(package_name(entry), package_name(entry)) for entry in conda}
    listed |= {package_name(entry) for entry in pip if not entry.startswith("-")}  # not "--editable ."
    listed -= NOT_PACKAGES

    assert listed == pip_names, (
        f"only in environment.yml: {sorted(listed - pip_names)}; "
        f"only in pyproject.toml: {sorted(pip_names - listed)}"
    )


def test_environment_yml_uses_conda_forge_alone_and_pip_for_pip_only_names():
    """One channel, conda-forge; conda entries carry no pip extras or PyPI-only wheel names."""
    text = (REPO / "environment.yml").read_text()
    channels = re.search(r"^channels:\n((?:  - .*\n)+)", text, flags=re.MULTILINE)
    assert channels and channels.group(1).split() == ["-", "conda-forge"], channels
    conda, _ = read_dependencies(text)
    wrong = [entry for entry in conda if "[" in entry or package_name(entry).endswith("-binary")]
    assert not wrong, f"PyPI-only names in conda's list (move them under pip:): {wrong}"


def test_line_parser_agrees_with_yaml():
    """The fallback line parser of environment.yml reads the same packages as PyYAML."""
    yaml = pytest.importorskip("yaml")
    text = (REPO / "environment.yml").read_text()
    entries = yaml.safe_load(text)["dependencies"]
    by_yaml = (
        [entry for entry in entries if isinstance(entry, str)],
        [item for entry in entries if isinstance(entry, dict) for item in entry.get("pip", [])],
    )
    assert parse_dependencies(text) == by_yaml


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
