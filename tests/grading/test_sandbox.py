"""The grading sandbox, piece by piece: bubblewrap around a kernel, cgroups per student, the checks' preamble,
the grader's checks of an executed notebook.

Fast tests on synthetic inputs; the hostile and exploit classes of test_run_robust.py attack them
together through the real grader. ``make test`` sets SIAMESE_REQUIRE_SANDBOX when it runs as root on
Debian, where it installs bubblewrap: there a sandbox that cannot be built fails these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from helpers import REPO, SANDBOX_REQUIRED, subprocess_env
from traitlets.config import Config

from autograder.build import CHECK_PREAMBLE, build_all
from autograder.grading import sandbox
from autograder.grading.judge import judge_cell, verdict_outputs
from autograder.grading.record import verify_executed
from autograder.grading.repair import is_test_cell
from autograder.grading.worker import failure_reason, kernel_config

AVAILABLE, WHY_NOT = sandbox.availability()
REQUIRED = SANDBOX_REQUIRED


@pytest.fixture
def needs_sandbox():
    """Skip without bubblewrap, saying why; fail instead where ``make test`` installed it (root on Debian)."""
    if not AVAILABLE:
        (pytest.fail if REQUIRED else pytest.skip)(f"no grading sandbox on this machine: {WHY_NOT}")


def test_availability_explains_itself():
    """Either the sandbox can be built, or the reason says why not and what to do."""
    assert (WHY_NOT == "") == AVAILABLE, WHY_NOT
    if REQUIRED:
        assert AVAILABLE, WHY_NOT


# ---------------------------------------------------------------- bubblewrap around one program

INSIDE = """
import json, os, socket, sys
report = {"uid": os.getuid(), "caps": open("/proc/self/status").read().split("CapEff:")[1].split()[0],
          "interfaces": [name for _, name in socket.if_nameindex()],
          "routes": open("/proc/net/route").read().strip().splitlines()[1:],
          "env": sorted(os.environ), "cwd": os.getcwd(), "seen": [p for p in sys.argv[1:] if os.path.exists(p)],
          "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
written = []
for path in (sys.argv[1], os.path.dirname(sys.argv[1]), os.path.dirname(os.__file__), "/usr", "/", "/tmp"):
    try:
        open(os.path.join(path, "planted"), "w").write("x")
        written.append(path)
    except OSError:
        pass
report["written"] = written
open("mine", "w").write("the working folder is writable")
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2)
    report["connected"] = True
except OSError:
    report["connected"] = False
print(json.dumps(report))
"""


def test_a_sandboxed_program_sees_and_reaches_nothing_of_the_host(needs_sandbox, tmp_path):
    """uid 65534, no capabilities, only lo and no route, no host folder but the bound ones, nothing written
    outside its own tmpfs (not even beside a bound folder), the grader's environment gone, no connection to the
    host's loopback."""
    import json

    secret = tmp_path / "grading-out"
    secret.mkdir()
    (secret / "grades.csv").write_text("secret")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    server = socket.create_server(("127.0.0.1", 0))
    try:
        command = [
            *sandbox.bwrap_command(tmp_path / "work", run_dir),
            sys.executable,
            "-c",
            INSIDE,
            str(secret),
            str(server.getsockname()[1]),
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "SIAMESE_SECRET_TOKEN": "s3cret"},
        )
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["uid"], report["caps"]) == (65534, "0000000000000000"), report
    assert (report["interfaces"], report["routes"], report["connected"]) == (["lo"], [], False), report
    assert report["seen"] == [] and report["written"] == [], report
    assert "SIAMESE_SECRET_TOKEN" not in report["env"] and report["cwd"] == str(tmp_path / "work"), report
    assert report["processes"] == [1, 2], report  # bubblewrap's init and the program: nothing of the host
    assert not (tmp_path / "work").exists() and list(run_dir.iterdir()) == []  # its tmpfs vanished with it
    assert not (secret / "planted").exists()


def test_the_repository_is_not_visible_only_its_packages(needs_sandbox, tmp_path):
    """The course packages are readable; the repository's .git, lessons and tests are not there at all."""
    (tmp_path / "run").mkdir()
    probe = (
        "import os, sys; print([os.path.exists(os.path.join(sys.argv[1], name)) "
        "for name in ('autograder', 'solutions', 'data_utils', '.git', 'lessons', 'tests', 'README.md')])"
    )
    result = subprocess.run(
        [*sandbox.bwrap_command(tmp_path / "work", tmp_path / "run"), sys.executable, "-c", probe, str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([True, True, True, False, False, False, False])


SEARCH = """
import json, os, sys
wanted = json.loads(sys.argv[2])
lines, texts = set(wanted["lines"]), [t.encode() for t in wanted["texts"]]
found = []
for top in sys.argv[1].split(os.pathsep):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) < 8_000_000:
                    data = open(path, "rb").read()
                    hit = any(text in data for text in texts)
                    if not hit and b"\\0" not in data[:8192]:  # a text file: its lines, whole
                        hit = not lines.isdisjoint(line.strip() for line in data.decode("utf-8", "ignore").splitlines())
                    if hit:
                        found.append(path)
            except OSError:
                pass
print(json.dumps(sorted(set(found))))
"""
#: Text only the reference of exercise 4.1 holds: its last line, and its error message (kept in a .pyc too).
LOSS_NEEDLES = ["torch.clamp(margin - d, min=0).pow(2))", "expected one label per pair ("]


def course_packages() -> dict[str, Path]:
    """The course's packages as this Python imports them (and as the sandbox binds them)."""
    return {path.name: path for path in sandbox.package_folders()}


def judge_side_needles():
    """What to search for: derived from the checks' judge side (every @judge_only helper, every probing() branch)."""
    from autograder.grading.judge_side import needles

    packages = course_packages()
    return needles(packages["autograder"], (packages["solutions"], packages["data_utils"]))


def lesson_overlays(lesson: str, root: Path) -> dict[Path, Path]:
    """What the grader binds over the course packages in ``lesson``'s kernel (compiled copies, as a run makes
    them): no reference, no judge side."""
    from autograder.grading import kernel_files

    packages = course_packages()
    files = kernel_files.write_copies(packages["solutions"], packages["autograder"], root / lesson, [lesson])
    return kernel_files.overlays(packages, lesson, files)


def search(
    where: str, lines: list[str], texts: list[str], sandboxed_as: tuple[Path, dict] | None = None
) -> list[str]:
    """The files under ``where`` (folders joined by ":") holding one of the needles; in a kernel's sandbox if given."""
    command = [sys.executable, "-c", SEARCH, where, json.dumps({"lines": lines, "texts": texts})]
    if sandboxed_as:
        tmp_path, overlays = sandboxed_as
        (tmp_path / "run").mkdir(parents=True, exist_ok=True)
        command = [*sandbox.bwrap_command(tmp_path / "work", tmp_path / "run", overlays=overlays), *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_no_answer_is_anywhere_a_lessons_kernel_can_read(needs_sandbox, tmp_path):
    """Lesson 4's kernel can read no file, source or compiled, that holds its reference loss or any judge-side code
    of the checks (search strings derived from the checks themselves); the same search finds them in the real
    packages, so it would find them anywhere."""
    needles = judge_side_needles()
    packages = course_packages()
    control = search(
        f"{packages['solutions']}:{packages['autograder']}",
        list(needles.lines),
        [*LOSS_NEEDLES, *needles.texts],
    )
    modules = {where.split(" (")[0].rpartition(".")[0] for where in needles.lines.values()}
    assert str(packages["solutions"] / "loss.py") in control, control
    assert {str(packages["autograder"] / "checks" / f"{m.rpartition('.')[2]}.py") for m in modules} <= set(
        control
    )
    # every lesson's checks module has a judge side (lesson 1's since its question), and so has the questions' module
    from autograder import syllabus

    every_lessons = {lesson.checks_module for lesson in syllabus.LESSONS} | {"autograder.checks.questions"}
    assert modules == every_lessons and len(needles.texts) >= 10, (modules, needles.texts)
    overlays = lesson_overlays("04_contrastive_loss", tmp_path)
    assert search("/", list(needles.lines), [*LOSS_NEEDLES, *needles.texts], (tmp_path, overlays)) == []


@pytest.mark.slow
def test_no_lesson_kernel_can_read_the_judge_side(needs_sandbox, tmp_path):
    """Each lesson's kernel differs from lesson 4's only in the copies bound over the course packages: in none of
    them do the course's folders hold judge-side code."""
    from autograder.syllabus import NAMES as LESSONS

    needles = judge_side_needles()
    where = ":".join(str(path) for path in course_packages().values())
    for lesson in LESSONS:
        overlays = lesson_overlays(lesson, tmp_path)
        assert search(where, list(needles.lines), list(needles.texts), (tmp_path / lesson, overlays)) == [], (
            lesson
        )


def test_nothing_a_sandboxed_program_starts_outlives_it(needs_sandbox, tmp_path):
    """A process started in a new session inside the sandbox ends when the sandboxed program ends."""
    (tmp_path / "run").mkdir()
    marker = f"siamese-survivor-{os.getpid()}"
    script = (
        f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
        f"{marker!r}], start_new_session=True)\nprint('started')"
    )
    result = subprocess.run(
        [*sandbox.bwrap_command(tmp_path / "work", tmp_path / "run"), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "started", result.stderr
    time.sleep(1)
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and marker.encode() in _cmdline(p)]
    assert survivors == []


def _cmdline(process: Path) -> bytes:
    try:
        return (process / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_sandboxed_kernel_executes_a_notebook(needs_sandbox, tmp_path):
    """The worker's kernelspec: nbclient drives a kernel under bubblewrap over Unix sockets."""
    source = (
        "import os, socket\n"
        "print(os.getuid(), [n for _, n in socket.if_nameindex()], os.environ['NBGRADER_EXECUTION'])"
    )
    nb = run_cells(tmp_path, [source], lesson="04_contrastive_loss")
    assert nb.cells[0].outputs[0]["text"] == "65534 ['lo'] autograde\n", nb.cells[0].outputs


def run_cells(
    tmp_path: Path,
    sources: list[str],
    sandboxed: bool = True,
    files: Path | None = None,
    lesson: str = "01_pair_dataset",
):
    """``sources`` as the cells of a notebook run by the worker's kernel for ``lesson`` (under bubblewrap, or plain),
    given the run's kernel files ``files``; the executed notebook."""
    from nbclient import NotebookClient

    work = tmp_path / "sandbox" / "autograded" / "alice" / lesson
    work.mkdir(parents=True, exist_ok=True)
    run_dir = tmp_path / "run" if sandboxed else None
    if run_dir:
        run_dir.mkdir(exist_ok=True)
    config = kernel_config(Config(), tmp_path / "sandbox", lesson, "alice", run_dir, files=files)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    NotebookClient(
        nb,
        config=config,
        kernel_name=config.ExecutePreprocessor.kernel_name,
        timeout=60,
        resources={"metadata": {"path": str(work)}},
    ).execute()
    return nb


def test_a_sandboxed_kernel_makes_figures_but_draws_none(needs_sandbox, tmp_path):
    """A figure shown and one left open are both closed undrawn, each with a line in its place: grading pays
    for no picture (no check reads one), and the next cell starts with no figure, as after the inline backend."""

    from data_utils.grading_figures import NOT_DRAWN

    cells = [
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()",
        "plt.figure()\nplt.imshow([[0, 1], [1, 0]])",  # left open, as a cell whose last line draws
        "print(plt.get_fignums(), plt.get_backend())",
    ]
    nb = run_cells(tmp_path, cells)
    texts = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]
    assert not [o for c in nb.cells for o in c.outputs if "image/png" in o.get("data", {})], (
        "a figure was drawn"
    )
    assert texts[:2] == [f"{NOT_DRAWN}\n"] * 2, texts
    assert texts[2] == "[] module://data_utils.grading_figures\n", texts


FIGURE_PROBE = """
import matplotlib.pyplot as plt
plt.plot([0, 1], [1, 0])
plt.show()
print(plt.get_fignums(), plt.get_backend())
"""


FONT_PROBE = """
import logging, os
logging.basicConfig(level=logging.INFO)  # matplotlib says at INFO when it builds a font list of its own
import matplotlib.pyplot
listed = [os.path.join(d, n) for d, _, names in os.walk("/var/tmp/matplotlib") for n in names if "fontlist" in n]
print([(os.path.basename(p), os.access(p, os.W_OK)) for p in listed])
"""


def test_every_kernel_reads_the_font_list_built_once_under_the_same_walls(needs_sandbox, tmp_path):
    """The run's font list, built by a sandboxed process, is bound read-only where a kernel's matplotlib looks:
    the kernel builds none of its own (about 0.3 s of CPU each); without it, the kernel builds one, as before."""
    from autograder.grading import kernel_files

    files, font_list = kernel_files.make(course_packages(), tmp_path / "files", ["01_pair_dataset"])
    assert font_list is not None and font_list.name.startswith("fontlist-"), font_list
    given = run_cells(tmp_path / "given", [FONT_PROBE], files=files).cells[0]
    assert stream_text(given, "stdout") == f"[('{font_list.name}', False)]\n"  # the bound copy, read-only
    assert "generated new fontManager" not in stream_text(given, "stderr"), stream_text(given, "stderr")
    alone = run_cells(tmp_path / "alone", [FONT_PROBE]).cells[
        0
    ]  # a student's own copies, made without a font list
    assert stream_text(alone, "stdout") == f"[('{font_list.name}', True)]\n"  # its own, in its own tmpfs
    assert "generated new fontManager" in stream_text(alone, "stderr"), stream_text(alone, "stderr")


def stream_text(cell, name: str) -> str:
    """What a cell wrote to one stream."""
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == name)


def test_a_font_list_whose_build_failed_is_never_bound(tmp_path, monkeypatch):
    """A build that fails after writing part of the list leaves none behind: no kernel reads a broken list."""
    from autograder.grading import kernel_files

    def failing_build(command, **kwargs):
        (tmp_path / "files" / "fonts" / "run" / "fontlist-v1.json").write_text('{"_version": ')
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(sandbox.subprocess, "run", failing_build)
    assert sandbox.build_font_list(tmp_path / "files" / "fonts") is None
    assert kernel_files.font_list(tmp_path / "files") is None
    assert not list((tmp_path / "files").rglob("fontlist-*")), "a partial font list was left behind"


def test_the_runs_kernel_files_reach_every_lesson_of_a_worker(tmp_path, monkeypatch):
    """``run_worker`` passes the run's kernel files to a sandboxed worker, and the worker to each lesson it runs."""
    from autograder.grading import execute, worker

    files = tmp_path / "kernel-files"
    started = []

    def start(sandbox_dir, student, lessons, options, env, zygote):
        started.append(options)
        raise RuntimeError("stop here: the options are what this test reads")

    monkeypatch.setattr(execute, "_start_worker", start)
    with pytest.raises(RuntimeError, match="stop here"):
        execute.run_worker(tmp_path, "alice", ["01_pair_dataset"], 60, 10, 0, True, kernel_files=files)
    assert started[0][started[0].index("--kernel-files") + 1] == str(files), started

    (tmp_path / "gradebook.db").write_bytes(b"")
    handed = []
    monkeypatch.setattr(worker, "execute_lesson", lambda job, clock: handed.append(job.files) or {})
    monkeypatch.setattr(
        os, "environ", dict(os.environ)
    )  # the worker points HOME and the rest into the sandbox
    lessons = ["01_pair_dataset", "02_cnn_backbone"]
    assert worker.main([*started[0], "--", str(tmp_path), "alice", *lessons]) == 0
    assert handed == [files] * len(lessons)


def test_the_kernels_bytecode_is_compiled_from_the_copies_they_read(tmp_path):
    """Every compiled file among the kernels' copies is the compilation of its own copy's source (which holds no
    answer: the walks above), and every source has one: no kernel compiles the checks again."""
    import importlib.util
    import marshal

    from autograder import syllabus
    from autograder.grading import kernel_files

    packages = course_packages()
    folder = kernel_files.write_copies(
        packages["solutions"], packages["autograder"], tmp_path, syllabus.NAMES
    )
    sources = sorted(folder.rglob("*.py"))
    assert len(sources) > 20, sources
    for source in sources:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        assert compiled.is_file(), f"{source} has no bytecode: each kernel would compile it again"
        data, stat = compiled.read_bytes(), source.stat()
        # The header Python checks before it uses the file: stamped with the source's time and size.
        assert data[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(data[4:8], "little") == 0, source
        assert int.from_bytes(data[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF, source
        assert int.from_bytes(data[12:16], "little") == stat.st_size & 0xFFFFFFFF, source
        code = marshal.loads(data[16:])
        assert code == compile(source.read_bytes(), str(source), "exec", dont_inherit=True), source
    assert sorted(folder.rglob("*.pyc")) == sorted(
        Path(importlib.util.cache_from_source(str(source))) for source in sources
    )


def test_a_kernel_outside_the_sandbox_draws_no_figure_either(tmp_path, monkeypatch):
    """``--isolation off``: a plain kernel inherits the worker's environment, which selects the same backend."""
    from autograder.grading.worker import kernel_environment
    from data_utils.grading_figures import NOT_DRAWN

    monkeypatch.setattr(os, "environ", {**os.environ, "MPLBACKEND": "agg"})  # a setting the worker overrides
    kernel_environment(tmp_path)  # the worker's, before it starts any kernel
    nb = run_cells(tmp_path, [FIGURE_PROBE], sandboxed=False)
    assert stream_text(nb.cells[0], "stdout") == f"{NOT_DRAWN}\n[] module://data_utils.grading_figures\n"


# ---------------------------------------------------------------- limits per student


@pytest.fixture
def student_group():
    """A student's cgroups (1 GB of memory, 30 processes), removed after the test."""
    if sandbox.cgroup_controllers() is None:
        (pytest.fail if REQUIRED else pytest.skip)("no cgroups this user can create (memory and pids)")
    group = sandbox.StudentGroup("test-alice", memory_mb=1024, max_processes=30)
    yield group
    group.remove()


def run_in_group(group: sandbox.StudentGroup, script: str) -> subprocess.CompletedProcess:
    """Run a Python ``script`` in a process that first joins ``group``, as a worker does."""
    join = (
        "import sys\nfrom pathlib import Path\nfrom autograder.grading.sandbox import join_groups\n"
        "join_groups([Path(p) for p in sys.argv[1:]])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", join + script, *map(str, group.folders)],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )


def test_a_student_group_limits_processes_together(student_group):
    """In a student's cgroups, a fork loop stops at the process limit; the group is gone afterwards."""
    result = run_in_group(
        student_group,
        "import os, time\nstarted = 0\n"
        "try:\n    for _ in range(200):\n        if os.fork() == 0:\n            os.closerange(0, 3)\n"
        "            time.sleep(20)\n            os._exit(0)\n        started += 1\n"
        "except OSError:\n    pass\nprint(started)",
    )
    assert result.returncode == 0, result.stderr
    assert 0 < int(result.stdout) < 30, result.stdout
    assert student_group.stop_all() >= int(result.stdout)  # the sleeping children, stopped at once
    student_group.remove()
    assert not any(folder.exists() for folder in student_group.folders)


def test_a_student_group_counts_the_cpu_of_every_process_in_it(student_group):
    """A process that joins a student's groups and burns about 0.3 s of CPU in a child is counted in the group."""
    if student_group.cpu_seconds() is None:
        (pytest.fail if REQUIRED else pytest.skip)(
            "no cgroup here counts CPU (cgroup v1 cpuacct or v2 cpu.stat)"
        )
    result = run_in_group(
        student_group,
        "import subprocess\nsubprocess.run([sys.executable, '-c', 'import time\\n"
        "t = time.process_time()\\nwhile time.process_time() - t < 0.3: pass'], check=True)",
    )
    assert result.returncode == 0, result.stderr
    assert student_group.cpu_seconds() >= 0.3, student_group.cpu_seconds()


# ---------------------------------------------------------------- the checks' preamble


def test_the_preamble_ignores_a_shadow_package_in_the_sandbox(tmp_path):
    """A fake ``autograder`` written into the grading sandbox and put first on sys.path is not imported."""
    sandbox = tmp_path / "sandbox"
    shadow = sandbox / "shadow" / "autograder"
    (shadow / "checks").mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "checks" / "__init__.py").write_text("")
    (shadow / "checks" / "loss.py").write_text("FAKE = True\n")
    cwd = sandbox / "autograded" / "alice" / "04_contrastive_loss"
    cwd.mkdir(parents=True)
    script = (
        f"import sys\nsys.path.insert(0, {str(shadow.parent)!r})\nimport autograder.checks.loss\n"
        "assert hasattr(autograder.checks.loss, 'FAKE')  # the shadow wins before the preamble\n"
        + CHECK_PREAMBLE.format(module="loss")
        + "print(checks.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(SIAMESE_GRADING_SANDBOX=sandbox),
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == REPO / "autograder" / "checks" / "loss.py"


# ---------------------------------------------------------------- the grader's checks of an executed notebook


@pytest.fixture(scope="module")
def lesson_4():
    """The nbgrader source notebook of lesson 4."""
    return next(lesson.source for lesson in build_all() if lesson.name == "04_contrastive_loss")


def executed_copy(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``source`` as if executed and judged with every check passing: the judge's mark and [PASS] lines."""
    nb = nbformat.from_dict(source)
    for cell in nb.cells:
        if is_test_cell(cell):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="[PASS] a check\n")]
            cell.metadata["siamese"] = {"judged": True}
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
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_similar_pairs")
    cell.source = (
        "# This cell (id:loss_similar_pairs) was missing from the submission. It was added back by nbgrader.\n\n"
        + cell.source
    )
    assert verify_executed(nb, lesson_4) == ([], None)
    cell.source = "# added back, says the student\n\n" + cell.source.split("\n\n", 1)[1]
    assert verify_executed(nb, lesson_4)[0] == [
        "test cells loss_similar_pairs ran in an edited form; scored 0"
    ]


def test_a_test_cell_without_the_judges_verdict_is_scored_0(lesson_4):
    """A test cell the judge did not decide keeps none of the kernel's outputs and is scored 0."""
    nb = executed_copy(lesson_4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_similar_pairs")
    del cell.metadata["siamese"]
    notes, _ = verify_executed(nb, lesson_4)
    assert notes == ["cells loss_similar_pairs have no verdict of the judge; scored 0"]
    assert [o.output_type for o in cell.outputs] == ["error"]


def test_a_cell_stopped_at_the_time_limit_is_noted(lesson_4):
    """A test cell interrupted by nbgrader's cell timeout scores 0 (its error) and the notes say why."""
    nb = executed_copy(lesson_4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_similar_pairs")
    outputs = [
        nbformat.v4.new_output("error", ename=name, evalue="", traceback=[])
        for name in ("KeyboardInterrupt", "CellTimeoutError")
    ]
    cell.outputs = verdict_outputs(*judge_cell("04_contrastive_loss", cell.source, outputs, seed=1))
    assert "stopped at the time limit" in cell.outputs[-1].evalue
    assert verify_executed(nb, lesson_4) == (
        ["test cells loss_similar_pairs were stopped at the time limit for one cell; scored 0"],
        None,
    )


def test_a_test_cell_flagged_as_a_written_answer_is_still_verified(lesson_4):
    """The student's file cannot make a test cell a written answer (exempt from the checks) by its flags."""
    nb = executed_copy(lesson_4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_similar_pairs")
    cell.metadata["nbgrader"]["solution"] = True
    cell.source += "\npass"
    notes, _ = verify_executed(nb, lesson_4)
    assert notes == ["test cells loss_similar_pairs ran in an edited form; scored 0"]


def test_a_missing_test_cell_stops_the_scoring(lesson_4):
    """A test cell absent after execution cannot be scored: the lesson is reported, not silently scored."""
    nb = executed_copy(lesson_4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "loss_similar_pairs"]
    assert verify_executed(nb, lesson_4) == (
        [],
        "test cells loss_similar_pairs are missing from the executed notebook",
    )


# ---------------------------------------------------------------- reasons


def test_failure_reason_names_the_innermost_exception():
    """nbgrader's wrapper ("Please see the above traceback") is not the reason; the exception under it is."""
    log = (
        '[INFO] Autograding\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "sqlite3.OperationalError: no such table: comment\n"
        "nbgrader.converters.base.NbGraderException: Please see the the above traceback for details."
    )
    assert failure_reason(log, None) == "OperationalError: no such table: comment"
    assert failure_reason(
        "[INFO] x\nnbgrader.converters.base.NbGraderException: Please see the above", None
    ) == ("NbGraderException: Please see the above")
    assert failure_reason("DeadKernelError: Kernel died", None) == "kernel died"
    assert failure_reason("", None) == "nbgrader failed"


def test_a_sandboxed_kernel_can_be_interrupted(needs_sandbox, tmp_path):
    """A cell in an endless loop is interrupted at the cell time limit, and the next cell still runs."""
    from nbclient import NotebookClient

    work = tmp_path / "sandbox" / "autograded" / "alice" / "04_contrastive_loss"
    work.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    config = kernel_config(Config(), tmp_path / "sandbox", "04_contrastive_loss", "alice", tmp_path / "run")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("while True:\n    pass"),
            nbformat.v4.new_code_cell("print('still here')"),
        ]
    )
    NotebookClient(
        nb,
        config=config,
        kernel_name=config.ExecutePreprocessor.kernel_name,
        timeout=5,
        interrupt_on_timeout=True,
        allow_errors=True,
        resources={"metadata": {"path": str(work)}},
    ).execute()
    assert nb.cells[0].outputs[-1]["ename"] == "KeyboardInterrupt", nb.cells[0].outputs
    assert nb.cells[1].outputs[0]["text"] == "still here\n", nb.cells[1].outputs


def test_outputs_are_cut_as_they_arrive_and_only_kept_bytes_count():
    """5 MB into one cell: 2 MB kept and a note; what was dropped does not count against the next cell."""
    from autograder.grading.worker import CELL_OUTPUT_LIMIT_BYTES, LimitedExecute

    executor = LimitedExecute()
    executor.output_bytes, executor.cut_cells = {}, set()
    executor.reset_execution_trackers()  # what executing a notebook and a cell set up first
    executor.clear_before_next_output = False

    def message(size: int) -> dict:
        return {
            "msg_type": "stream",
            "header": {"msg_type": "stream"},
            "parent_header": {"msg_id": "m"},
            "content": {"name": "stdout", "text": "x" * size},
        }

    flooded, next_cell = [], []
    for _ in range(5):
        executor.output(flooded, message(2**20), None, 0)
    executor.output(next_cell, message(1000), None, 1)
    assert [o.output_type for o in flooded] == ["stream", "display_data"], flooded
    assert flooded[-1]["data"]["text/plain"] == "[grading: output cut here, over 2 MB for one cell]"
    assert executor.output_bytes[0] <= CELL_OUTPUT_LIMIT_BYTES
    assert [o.output_type for o in next_cell] == ["stream"]


def test_another_installed_copy_of_the_course_is_covered_too(needs_sandbox, tmp_path, monkeypatch):
    """A full copy of the packages on the path (an earlier `pip install .`, say) is covered by the same stand-in
    copies as the one in use: the kernel finds no judge-side code and no reference there either."""
    packages = course_packages()
    site = (
        Path(sys.prefix) / f"siamese-test-site-{os.getpid()}"
    )  # inside the environment, which the kernel reads
    for name in ("autograder", "solutions"):
        shutil.copytree(packages[name], site / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(site))
    try:
        _search_another_copy(site, tmp_path)
    finally:
        shutil.rmtree(site)


def _search_another_copy(site: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    work = tmp_path / "sandbox" / "autograded" / "alice" / "04_contrastive_loss"
    config = kernel_config(Config(), tmp_path / "sandbox", "04_contrastive_loss", "alice", tmp_path / "run")
    argv = json.loads(
        (tmp_path / "sandbox" / "kernelspec" / "kernels" / sandbox.KERNEL_NAME / "kernel.json").read_text()
    )["argv"]
    assert config.ExecutePreprocessor.kernel_name == sandbox.KERNEL_NAME
    needles = judge_side_needles()
    control = search(str(site), list(needles.lines), [*LOSS_NEEDLES, *needles.texts])
    assert (
        str(site / "solutions" / "loss.py") in control
        and str(site / "autograder" / "checks" / "loss.py") in control
    )
    work.mkdir(parents=True)
    command = [
        *argv[: argv.index(sys.executable)],
        sys.executable,
        "-c",
        SEARCH,
        str(site),
        json.dumps({"lines": list(needles.lines), "texts": [*LOSS_NEEDLES, *needles.texts]}),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
