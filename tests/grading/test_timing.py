"""Grading's timings (``autograder/grading/timing.py``) and the benchmark reading them (``autograder/benchmark.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from autograder.benchmark import STAGES, summarise
from autograder.grading.execute import worker_message
from autograder.grading.timing import LapClock, Timings, clean_record, group_cpu_seconds


def test_a_worker_timing_record_keeps_only_known_fields_of_the_right_type():
    """A record from a worker line is checked field by field: wrong types, booleans, huge numbers and extras go."""
    hostile = {
        "stage": "cell",
        "cell": True,
        "kind": ["x"],
        "wall": 1e12,
        "cpu": -1,
        "score": 100,
        "lesson": "a" * 500,
    }
    assert clean_record(hostile) == {"stage": "cell", "lesson": "a" * 100}
    assert clean_record({"stage": "judge", "wall": 0.5, "cpu": 2}) == {
        "stage": "judge",
        "wall": 0.5,
        "cpu": 2.0,
    }
    assert clean_record({"wall": 1.0}) is None  # no stage
    assert clean_record(["stage", "judge"]) is None


def test_a_worker_line_brings_its_timings_cleaned_and_nothing_else():
    """``worker_message`` keeps the lesson's cleaned timings; records that are not dicts with a stage are dropped."""
    line = json.dumps(
        {
            "lesson": "01_x",
            "notes": [],
            "timings": [{"stage": "judge", "cpu": 1.5, "x": 1}, 7, {}],
            "score": 99,
        }
    )
    assert worker_message(line, ["01_x"]) == {
        "lesson": "01_x",
        "notes": [],
        "timings": [{"stage": "judge", "cpu": 1.5}],
    }
    no_list = json.dumps({"lesson": "01_x", "timings": "all of them"})
    assert "timings" not in worker_message(no_list, ["01_x"])


def test_laps_follow_each_other_and_carry_cpu_only_where_a_group_counts_it(tmp_path):
    """Each lap is the time since the previous one; without a counter a lap has no CPU (never a guessed one)."""
    clock = LapClock(None)
    time.sleep(0.05)
    clock.lap("first")
    clock.lap("second", cell=3, kind="test")
    assert clock.records[0]["stage"] == "first" and clock.records[0]["wall"] >= 0.05
    assert clock.records[1] == {
        "stage": "second",
        "cell": 3,
        "kind": "test",
        "wall": clock.records[1]["wall"],
    }
    assert clock.records[1]["wall"] < 0.05
    (tmp_path / "cpuacct.usage").write_text("2500000000\n")
    assert group_cpu_seconds(tmp_path) == 2.5
    counted = LapClock(tmp_path)
    (tmp_path / "cpuacct.usage").write_text("4000000000\n")
    counted.lap("judge")
    assert counted.records[0]["cpu"] == 1.5


def test_cgroup_v2_counters_are_read_too(tmp_path):
    """cgroup v2 keeps a group's CPU in ``cpu.stat`` as microseconds; an unreadable counter is ``None``."""
    (tmp_path / "cpu.stat").write_text("usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n")
    assert group_cpu_seconds(tmp_path) == 3.0
    (tmp_path / "cpu.stat").write_text("garbage\n")
    assert group_cpu_seconds(tmp_path) is None
    assert group_cpu_seconds(tmp_path / "missing") is None


def test_a_stage_counts_this_threads_cpu_not_its_sleep(tmp_path):
    """``Timings.stage`` times a block: a sleep is wall time, not CPU; the records are written as JSON lines."""
    timings = Timings()
    with timings.stage("sleep", student="alice"):
        time.sleep(0.1)
    record = timings.records[0]
    assert record["student"] == "alice" and record["wall"] >= 0.1 and record["cpu"] < 0.05
    timings.write(tmp_path / "t.jsonl")
    assert json.loads((tmp_path / "t.jsonl").read_text()) == record


def test_the_benchmark_adds_stages_per_student_and_lesson():
    """``summarise``: seconds per student by stage (cells by kind) and by lesson; the whole worker is not a stage."""
    records = [
        {
            "stage": "cell",
            "kind": "teaching",
            "lesson": "01",
            "cell": 2,
            "wall": 2.0,
            "cpu": 4.0,
            "student": s,
        }
        for s in ("a", "b")
    ]
    records += [
        {"stage": "judge", "lesson": "01", "wall": 1.0, "cpu": 1.0, "student": "a"},
        {"stage": "worker, all", "student": "a", "wall": 9.0, "cpu": 9.0},
    ]
    summary = summarise(records, students=2)
    assert summary["stages"] == {"cells: teaching": [2.0, 4.0], "judge": [0.5, 0.5]}
    assert summary["lessons"] == {"01": [2.5, 4.5]}
    assert summary["cells"] == [{"lesson": "01", "cell": 2, "kind": "teaching", "wall": 2.0, "cpu": 4.0}]
    assert set(summary["stages"]) <= set(STAGES)


def string_formats(schema: object) -> set[str]:
    """Every value of a ``format`` keyword in a JSON schema (a property *named* format holds a schema, not a string)."""
    if isinstance(schema, dict):
        found = {schema["format"]} if isinstance(schema.get("format"), str) else set()
        return found.union(*(string_formats(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(string_formats(value) for value in schema))
    return set()


def test_no_notebook_schema_asks_for_the_iri_checker_the_grader_goes_without():
    """The grader blocks ``rfc3987_syntax`` (1 s of import per process): nbformat's schemas ask for no IRI format, so
    even a validator that checked formats would not need it."""
    assert string_formats({"properties": {"format": {"type": "string", "format": "iri"}}}) == {"iri"}
    schemas = sorted(Path(nbformat.__file__).parent.glob("v*/*.schema.json"))
    assert schemas, "nbformat's schemas were not found"
    formats = set().union(*(string_formats(json.loads(path.read_text())) for path in schemas))
    assert not formats & {"iri", "iri-reference"}, (formats, schemas)


def test_grader_processes_import_nbformat_without_compiling_the_iri_grammars():
    """A worker's imports (nbgrader, nbformat, jsonschema) leave ``rfc3987_syntax`` out; nbformat still validates."""
    code = (
        "import sys, autograder.grading.worker, nbformat; "
        "nbformat.validate(nbformat.v4.new_notebook()); "
        "print(repr(sys.modules.get('rfc3987_syntax', 'never asked for')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None", "rfc3987_syntax was imported: " + result.stdout
