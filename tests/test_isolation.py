"""The walls around graded notebooks, piece by piece: namespaces, the checks' preamble, the grader's checks.

Fast tests on synthetic inputs; the hostile classes of test_grading_robust.py exercise them together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from autograder import isolation
from autograder.build import CHECK_PREAMBLE, build_all
from autograder.grading import count_checks, hidden_folders, verify_executed
from autograder.worker import failure_reason
from helpers import REPO, subprocess_env

AVAILABLE, WHY_NOT = isolation.availability()
needs_isolation = pytest.mark.skipif(not AVAILABLE, reason=f"no namespaces on this machine: {WHY_NOT}")


# ---------------------------------------------------------------- namespaces

WALLED_SCRIPT = '''
import os, subprocess, sys, time
from pathlib import Path
from autograder.isolation import lock_down

sandbox, hidden, outside, heartbeat = map(Path, sys.argv[1:5])
lock_down(sandbox, [hidden])
report = {}
for name, path in (("sandbox", sandbox / "file"), ("outside", outside / "file")):
    try:
        path.write_text("written")
        report[name] = "written"
    except OSError as error:
        report[name] = error.strerror
report["hidden"] = sorted(p.name for p in hidden.iterdir())
report["processes"] = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
subprocess.Popen([sys.executable, "-c", "import sys, time\\nwhile True:\\n    open(sys.argv[1], 'w').write(str(time.time()))"
                  "\\n    time.sleep(0.1)", str(heartbeat)], start_new_session=True)
time.sleep(1)
print(report)
'''


@needs_isolation
def test_a_walled_process_writes_only_its_sandbox_and_leaves_nothing_behind(tmp_path):
    """Inside the namespaces: the sandbox is writable, the rest read-only, hidden folders empty, no survivors."""
    hidden = tmp_path / "grader-out"
    sandbox = hidden / "sandboxes" / "alice"  # under a hidden folder, as the real sandboxes are
    sandbox.mkdir(parents=True)
    (hidden / "grades.csv").write_text("secret")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    heartbeat = Path("/dev/shm") / f"siamese-test-isolation-{os.getpid()}"
    try:
        result = subprocess.run([*isolation.command_prefix(), sys.executable, "-c", WALLED_SCRIPT,
                                 str(sandbox), str(hidden), str(outside), str(heartbeat)],
                                capture_output=True, text=True, timeout=60, env=subprocess_env())
        assert result.returncode == 0, result.stderr
        report = eval(result.stdout.strip().splitlines()[-1])  # a dict literal printed by the script
        assert report["sandbox"] == "written" and (sandbox / "file").read_text() == "written"
        assert report["outside"] == "Read-only file system"
        assert report["hidden"] == ["sandboxes"]  # grades.csv is not visible, only the way to the sandbox
        assert report["processes"][0] == 1 and len(report["processes"]) < 5  # its own PID namespace
        assert heartbeat.is_file(), "the child process never ran"
        time.sleep(0.5)
        last = float(heartbeat.read_text() or 0)
        time.sleep(0.5)
        assert float(heartbeat.read_text() or 0) == last, "a process outlived its namespace"
    finally:
        heartbeat.unlink(missing_ok=True)


@needs_isolation
def test_stop_other_processes_kills_what_a_lesson_left_running():
    """The worker, as its namespace's init, stops every other process between lessons."""
    script = textwrap.dedent('''
        import subprocess, sys, time
        from autograder.isolation import stop_other_processes
        for _ in range(2):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        time.sleep(0.5)
        print(stop_other_processes(), stop_other_processes())
    ''')
    result = subprocess.run([*isolation.command_prefix(), sys.executable, "-c", script], capture_output=True,
                            text=True, timeout=60, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "0"]


def test_availability_explains_itself():
    """Either namespaces work, or the reason says why not (shown to the instructor in a warning)."""
    available, why_not = isolation.availability()
    assert available == (why_not == ""), why_not


def test_hidden_folders_never_hide_the_course_code(tmp_path):
    """An --out inside the repository is not hidden, or the notebooks could not import the checks."""
    (tmp_path / "subs").mkdir()
    assert hidden_folders(REPO, tmp_path / "subs", tmp_path / "work") == [(tmp_path / "subs").resolve(),
                                                                          (tmp_path / "work").resolve()]
    assert hidden_folders(tmp_path / "out", tmp_path / "subs.zip", tmp_path / "work") == [  # a zip: its folder
        (tmp_path / "out").resolve(), tmp_path.resolve(), (tmp_path / "work").resolve()]


# ---------------------------------------------------------------- the checks' preamble

def test_the_preamble_ignores_a_shadow_package_in_the_sandbox(tmp_path):
    """A fake ``autograder`` written into the grading sandbox and put first on sys.path is not imported."""
    sandbox = tmp_path / "sandbox"
    shadow = sandbox / "shadow" / "autograder"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "loss.py").write_text("FAKE = True\n")
    cwd = sandbox / "autograded" / "alice" / "04_contrastive_loss"
    cwd.mkdir(parents=True)
    script = (f"import sys\nsys.path.insert(0, {str(shadow.parent)!r})\nimport autograder.loss\n"
              "assert hasattr(autograder.loss, 'FAKE')  # the shadow wins before the preamble\n"
              + CHECK_PREAMBLE.format(module="loss") + "print(checks.__file__)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env=subprocess_env(SIAMESE_GRADING_SANDBOX=sandbox))
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == REPO / "autograder" / "loss.py"


# ---------------------------------------------------------------- the grader's checks of an executed notebook

@pytest.fixture(scope="module")
def lesson_4():
    """The nbgrader source notebook of lesson 4."""
    return next(lesson.source for lesson in build_all() if lesson.name == "04_contrastive_loss")


def executed_copy(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``source`` as if executed with every check passing: one [PASS] line per check in each test cell."""
    nb = nbformat.from_dict(source)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            text = "".join(f"[PASS] check {k}\n" for k in range(count_checks(cell.source)))
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return nb


def test_an_honest_executed_notebook_passes_verification(lesson_4):
    """Original test cells, one [PASS] per check: no note, nothing scored 0."""
    nb = executed_copy(lesson_4)
    assert verify_executed(nb, lesson_4) == ([], None)
    assert not any(o.output_type == "error" for c in nb.cells for o in c.get("outputs", []))


def test_an_edited_test_cell_is_scored_0(lesson_4):
    """A test cell that is not the original (nbgrader did not restore it) gets an error output and a note."""
    nb = executed_copy(lesson_4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_gradients")
    cell.source = 'print("[PASS] the loss can be differentiated\\n" * 5)'
    notes, reason = verify_executed(nb, lesson_4)
    assert reason is None
    assert notes == ["test cells loss_gradients ran in an edited form; scored 0"]
    assert cell.outputs[-1].output_type == "error" and "not the original" in cell.outputs[-1].evalue


def test_a_test_cell_nbgrader_added_back_is_the_original(lesson_4):
    """nbgrader's own header above a test cell it put back (the student deleted it) is not an edit."""
    nb = executed_copy(lesson_4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_values")
    cell.source = ("# This cell (id:loss_values) was missing from the submission. It was added back by nbgrader.\n\n"
                   + cell.source)
    assert verify_executed(nb, lesson_4) == ([], None)
    cell.source = "# added back, says the student\n\n" + cell.source.split("\n\n", 1)[1]
    assert verify_executed(nb, lesson_4)[0] == ["test cells loss_values ran in an edited form; scored 0"]


def test_suppressed_check_output_is_scored_0(lesson_4):
    """A test cell without an error and without its [PASS] lines (outputs hidden) is scored 0."""
    nb = executed_copy(lesson_4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_values")
    cell.outputs = []
    notes, _ = verify_executed(nb, lesson_4)
    assert notes == ["cells loss_values passed without the checks reporting success; scored 0"]


def test_a_cell_stopped_at_the_time_limit_is_noted(lesson_4):
    """A test cell interrupted by nbgrader's cell timeout scores 0 (its error) and the notes say why."""
    nb = executed_copy(lesson_4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_values")
    cell.outputs = [nbformat.v4.new_output("error", ename=name, evalue="", traceback=[])
                    for name in ("KeyboardInterrupt", "CellTimeoutError")]
    assert verify_executed(nb, lesson_4) == (
        ["test cells loss_values were stopped at the time limit for one cell; scored 0"], None)


def test_a_missing_test_cell_stops_the_scoring(lesson_4):
    """A test cell absent after execution cannot be scored: the lesson is reported, not silently scored."""
    nb = executed_copy(lesson_4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "loss_values"]
    assert verify_executed(nb, lesson_4) == ([], "test cells loss_values are missing from the executed notebook")


# ---------------------------------------------------------------- reasons

def test_failure_reason_names_the_innermost_exception():
    """nbgrader's wrapper ("Please see the above traceback") is not the reason; the exception under it is."""
    log = ("[INFO] Autograding\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
           "sqlite3.OperationalError: no such table: comment\n"
           "nbgrader.converters.base.NbGraderException: Please see the the above traceback for details.")
    assert failure_reason(log, None) == "OperationalError: no such table: comment"
    assert failure_reason("[INFO] x\nnbgrader.converters.base.NbGraderException: Please see the above", None) == (
        "NbGraderException: Please see the above")
    assert failure_reason("DeadKernelError: Kernel died", None) == "kernel died"
    assert failure_reason("", None) == "nbgrader failed"
