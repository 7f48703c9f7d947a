"""The nbgrader course configuration, shared by the build, the release and the grading commands."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

COURSE_ID = "siamese-course"
CELL_TIMEOUT_S = 30  # nbgrader's default; every graded cell finishes far below it on a CPU
REPO_ROOT = Path(__file__).resolve().parents[2]
#: What grading reads of the course: its packages, the lesson sources (the hidden objects, the release) and the badge's
#: repository in pyproject.toml.
CODE = ("autograder", "solutions", "data_utils", "lessons/src", "pyproject.toml")

CONFIG_TEMPLATE = """\
# nbgrader configuration of the Siamese-network course (written by `python -m autograder`).
c = get_config()  # noqa: F821 (defined by nbgrader when it reads this file)
c.CourseDirectory.course_id = "{course_id}"
c.CourseDirectory.root = r"{root}"
c.CourseDirectory.db_url = "{db_url}"
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
c.ExecutePreprocessor.timeout = {timeout}
c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and graded, not skipped
"""


GRADEBOOK_FILE = "gradebook.db"  # a course's own SQLite gradebook, inside its folder


def db_url_for(course: Path, db_url: str | None = None) -> str:
    """The gradebook URL: the given one, else a SQLite file inside the course folder."""
    return db_url or f"sqlite:///{(course / GRADEBOOK_FILE).resolve()}"


GRADEBOOK_LOCK = 0x5A1A3E5E  # the PostgreSQL advisory lock that gradebook syncs of this course take in turn


@contextlib.contextmanager
def gradebook_sync_lock(db_url: str | None) -> Iterator[None]:
    """Hold the gradebook while a course's assignments are synced into it: shards that build their course into one
    PostgreSQL gradebook take turns, because nbgrader's sync deletes and re-creates the rows of an assignment without
    submissions, and two syncs at once break each other's foreign keys. (A SQLite gradebook is one run's own.)"""
    if not db_url or not db_url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": GRADEBOOK_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": GRADEBOOK_LOCK})
    finally:
        engine.dispose()


def check_database(db_url: str) -> None:
    """Connect once to an instructor-given gradebook URL; raise ``ValueError`` saying what to do if that fails."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        url = make_url(db_url)
    except ArgumentError as error:
        raise ValueError(
            f"--db-url {db_url!r} is not a database URL ({error}); "
            "e.g. postgresql://user:password@host/database"
        ) from None
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(
            url, connect_args={"connect_timeout": 10} if url.get_backend_name() == "postgresql" else {}
        )
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except ModuleNotFoundError as error:
        raise ValueError(
            f"--db-url {shown}: the database driver {error.name!r} is not installed "
            "(for PostgreSQL: pip install 'psycopg[binary]', part of the instructor extra)"
        ) from None
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ValueError(
            f"cannot open the gradebook at {shown}: {reason}; check the URL, that the server is "
            "running and that the database exists (e.g. createdb)"
        ) from None


def create_gradebook(db_url: str) -> None:
    """Make an empty gradebook as nbgrader does (its tables, stamped with its newest migration), unless one is there.

    nbgrader asks a fresh ``alembic heads`` process for the migration (3 s, 2.2 s of CPU, for every new gradebook);
    alembic's own API reads the same scripts in this process. An existing gradebook is left to nbgrader.
    """
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base
    from nbgrader.dbutil import ALEMBIC_DIR
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            if inspect(connection).get_table_names():
                return
            Base.metadata.create_all(bind=connection)
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            connection.execute(
                text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                {"head": ScriptDirectory(ALEMBIC_DIR).get_current_head()},
            )
    finally:
        engine.dispose()


def nbgrader_config(course: Path, db_url: str | None = None, timeout: int = CELL_TIMEOUT_S):
    """A traitlets ``Config`` for nbgrader rooted at ``course``."""
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.course_id = COURSE_ID
    config.CourseDirectory.root = str(course.resolve())
    config.CourseDirectory.db_url = db_url_for(course, db_url)
    config.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    config.ExecutePreprocessor.timeout = timeout
    config.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and graded, not skipped
    return config


def write_config(course: Path, db_url: str | None = None, timeout: int = CELL_TIMEOUT_S) -> Path:
    """Write ``nbgrader_config.py`` into the course folder so plain ``nbgrader`` commands work there too."""
    course.mkdir(parents=True, exist_ok=True)
    path = course / "nbgrader_config.py"
    path.write_text(
        CONFIG_TEMPLATE.format(
            course_id=COURSE_ID, root=course.resolve(), db_url=db_url_for(course, db_url), timeout=timeout
        )
    )
    return path


def put_environment_on_path() -> None:
    """nbgrader runs ``alembic`` and kernels by name: find them next to this Python even if no venv is active."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def nbgrader_api(course: Path, db_url: str | None = None, timeout: int = CELL_TIMEOUT_S):
    """nbgrader's Python API for the course folder (no server, no exchange)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    put_environment_on_path()
    config = nbgrader_config(course, db_url, timeout)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def copy_course_code(destination: Path, root: Path = REPO_ROOT) -> Path:
    """A copy of the course's code as it is now (``CODE``, without compiled files) in ``destination``.

    ``grade`` runs from it: every process it starts imports the course from there (``code_environment``), so
    that an edit of the checkout while a class is graded changes no grade, and the checkout is never touched.
    """
    for name in CODE:
        source, target = root / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(source, target)
    return destination


def code_environment(code: Path) -> dict[str, str]:
    """This process's environment, with the course imported from the copy ``code`` before anything else."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = (
        "1"  # the copy stays byte for byte as taken: no __pycache__ appears in it
    )
    return env


def _code_files(root: Path) -> dict[str, bytes]:
    """``{path relative to root: bytes}`` of the files of ``CODE`` under ``root`` (compiled files aside)."""
    found = {}
    for name in CODE:
        top = root / name
        for path in [top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []:
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def changed_since(code: Path, root: Path = REPO_ROOT) -> list[str]:
    """The files of the course's code in ``root`` that differ from the copy ``code`` (changed, added or deleted)."""
    before, now = _code_files(code), _code_files(root)
    return sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))
