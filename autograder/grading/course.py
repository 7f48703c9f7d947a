"""The nbgrader course configuration, shared by the build, the release and the grading commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

COURSE_ID = "siamese-course"
CELL_TIMEOUT_S = 30  # nbgrader's default; every graded cell finishes far below it on a CPU

CONFIG_TEMPLATE = '''\
# nbgrader configuration of the Siamese-network course (written by `python -m autograder`).
c = get_config()  # noqa: F821 (defined by nbgrader when it reads this file)
c.CourseDirectory.course_id = "{course_id}"
c.CourseDirectory.root = r"{root}"
c.CourseDirectory.db_url = "{db_url}"
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
c.ExecutePreprocessor.timeout = {timeout}
c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and graded, not skipped
'''


def db_url_for(course: Path, db_url: str | None = None) -> str:
    """The gradebook URL: the given one, else a SQLite file inside the course folder."""
    return db_url or f"sqlite:///{(course / 'gradebook.db').resolve()}"


def check_database(db_url: str) -> None:
    """Connect once to an instructor-given gradebook URL; raise ``ValueError`` saying what to do if that fails."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        url = make_url(db_url)
    except ArgumentError as error:
        raise ValueError(f"--db-url {db_url!r} is not a database URL ({error}); "
                         "e.g. postgresql://user:password@host/database") from None
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 10} if url.get_backend_name() == "postgresql" else {})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except ModuleNotFoundError as error:
        raise ValueError(f"--db-url {shown}: the database driver {error.name!r} is not installed "
                         "(for PostgreSQL: pip install 'psycopg[binary]', part of the instructor extra)") from None
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ValueError(f"cannot open the gradebook at {shown}: {reason}; check the URL, that the server is "
                         "running and that the database exists (e.g. createdb)") from None


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
    path.write_text(CONFIG_TEMPLATE.format(course_id=COURSE_ID, root=course.resolve(),
                                           db_url=db_url_for(course, db_url), timeout=timeout))
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
