"""Fixtures of the grading tests: a private copy of the course with its solved notebooks, a PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from helpers.grading import DEFAULT_PG_URL, PG_URL_ENV, copy_course, course_env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A private copy of the course and its solved notebooks (``python -m autograder solutions``)."""
    root = tmp_path_factory.mktemp("robust")
    code = copy_course(root / "course-code")
    solved = root / "solved"
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "solutions", str(solved)],
        cwd=root,
        env=course_env(code),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return root, code, solved


# ---------------------------------------------------------------- a PostgreSQL gradebook


def postgres_driver() -> str:
    """The SQLAlchemy driver for the gradebook URL: the one a plain postgresql:// URL picks, else psycopg2."""
    import importlib.util

    from sqlalchemy.engine import make_url

    default = (
        make_url("postgresql://").get_dialect().driver
    )  # psycopg (3) from SQLAlchemy 2.1, psycopg2 before
    for driver in (default, "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return "postgresql" if driver == default else f"postgresql+{driver}"
    pytest.skip(
        f"no PostgreSQL driver: a postgresql:// URL needs `{default}` with this SQLAlchemy "
        "(`pip install 'psycopg[binary]'`), or psycopg2 for postgresql+psycopg2://"
    )


@pytest.fixture
def postgres_url():
    """A fresh, empty database on the test PostgreSQL server (dropped afterwards); skip if there is none."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    drivername = postgres_driver()
    given = os.environ.get(PG_URL_ENV)
    url = make_url(given or DEFAULT_PG_URL).set(drivername=drivername)
    admin = create_engine(
        url.set(database=url.database or "postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    name = f"siamese_grading_{os.getpid()}_{int(time.time())}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except DBAPIError as error:
        admin.dispose()
        where = f"{PG_URL_ENV}={given}" if given else f"{DEFAULT_PG_URL} (set {PG_URL_ENV} to use another)"
        pytest.skip(
            f"no PostgreSQL server that lets the test create a database at {where}: "
            f"{str(error.orig).strip().splitlines()[0]}; `make postgres` starts a throwaway one"
        )
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
