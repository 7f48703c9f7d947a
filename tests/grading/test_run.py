"""The instructor's grading from the command line: one class of made-up submissions through the real nbgrader
pipeline."""

import contextlib
import csv
import html
import json
import re
import shutil
import sqlite3
import time
from pathlib import Path

import nbformat
import pytest
from helpers import (
    REPO,
    SANDBOX_REQUIRED,
    awaiting,
    isolation_args,
    lesson_points,
    read_grades,
    run_module,
    set_manual_score,
    write_solved_notebooks,
)
from helpers.grading import cell_with_id, nbgrader_meta, replace_once, rewrite_exercise

from autograder import syllabus
from autograder.checks.loss import COLLAPSE_WHY
from autograder.grading import repair
from autograder.grading.demo_class import colab_text

LESSONS = syllabus.NAMES
CLASS_TIMEOUT_S = 3600


# ---------------------------------------------------------------- notebook helpers


def release_notebook(lesson: str) -> nbformat.NotebookNode:
    """The committed student notebook of a lesson."""
    return nbformat.read(REPO / "lessons" / f"{lesson}.ipynb", as_version=4)


def graded_points(lesson: str) -> dict[str, int]:
    """grade_id → points of a lesson's autograded (test) cells, in notebook order; written answers aside."""
    return {
        nbgrader_meta(c)["grade_id"]: nbgrader_meta(c)["points"]
        for c in release_notebook(lesson).cells
        if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")
    }


MAX_POINTS = {lesson: sum(graded_points(lesson).values()) for lesson in LESSONS}
AUTOGRADED = sum(
    MAX_POINTS[lesson] for lesson in syllabus.CORE
)  # the total of a correct course before its written
# answers are graded by hand (a bonus lesson's points are a column of their own, outside it)
# A student who wrote every written answer (the solved notebooks hold the model answers) waits for them.
WROTE_ALL = awaiting(sum(len(lesson_points(lesson, "answer")) for lesson in LESSONS))


# ---------------------------------------------------------------- the class

# One typical bug per lesson: (lesson, exercise cell, exact text, replacement).
BUGS = {
    "bug_01": (
        "01_pair_dataset",
        "exercise_1_1",  # labels inverted
        "float(int(label1) != int(label2))",
        "float(int(label1) == int(label2))",
    ),
    "bug_02": (
        "02_cnn_backbone",
        "exercise_2_1",  # average instead of max pooling in the first block
        "nn.MaxPool2d(2, stride=2),  # → 14 x 14",
        "nn.AvgPool2d(2, stride=2),  # → 14 x 14",
    ),
    "bug_03": (
        "03_embedding_head",
        "exercise_3_1",  # the final ReLU of the head missing
        "            nn.ReLU(),  # as in the original: embeddings are non-negative\n",
        "",
    ),
    "bug_04": (
        "04_contrastive_loss",
        "exercise_4_1",  # the margin term not squared
        "torch.clamp(margin - d, min=0).pow(2)",
        "torch.clamp(margin - d, min=0)",
    ),
    "bug_05": (
        "05_training_loop",
        "exercise_5_2",  # gradients never reset
        "        optimizer.zero_grad()\n",
        "",
    ),
    "bug_06": (
        "06_evaluation",
        "exercise_6_3",  # ROC AUC of the wrong direction (1 - AUC)
        "d = distances.double()",
        "d = -distances.double()",
    ),
}

# The bonus lesson: one typical bug in each exercise, each student handing in that lesson alone.
BONUS_BUGS = {
    "bug_07_1": (
        "07_one_shot",
        "exercise_7_1",  # images drawn with replacement: a query can also be a support
        "torch.randperm(len(by_class[int(c)]), generator=generator)[: k_shot + n_query]",
        "torch.randint(len(by_class[int(c)]), (k_shot + n_query,), generator=generator)",
    ),
    "bug_07_2": (
        "07_one_shot",
        "exercise_7_2",  # the first support instead of the mean of the supports
        "embeddings[episodes.support].mean(dim=2)",
        "embeddings[episodes.support][:, :, 0]",
    ),
    "bug_07_3": (
        "07_one_shot",
        "exercise_7_3",  # the standard deviation divided by n, not n - 1
        "float(values.std())",
        "float(values.std(correction=0))",
    ),
    "bug_07_4": (
        "07_one_shot",
        "exercise_7_4",  # the nearest other-class image may be of the same class
        "distances.masked_fill(same, math.inf)",
        "distances.masked_fill(itself, math.inf)",
    ),
}

# The graded cells each bug fails: the properties it breaks (tests/checks/ has the full tables).
BUG_FAILS = {
    "bug_01": {"pair_labels"},
    "bug_02": {"backbone_layers", "backbone_forward"},
    "bug_03": {"head"},
    "bug_04": {"loss_hinge"},  # only the property it breaks
    "bug_05": {
        "train_step",
        "train_learns",
    },  # the history is checked at lr = 0, where zero_grad cannot matter
    "bug_06": {"roc_auc"},
    "bug_07_1": {"episode_sampler"},
    "bug_07_2": {"episode_accuracy"},
    "bug_07_3": {"episode_interval"},
    "bug_07_4": {"batch_hard"},
}

# The graded cells that test each exercise (a bug may fail only these).
EXERCISE_CELLS = {
    "exercise_1_1": {"pair_items", "pair_labels", "pair_balance", "pair_seeding", "pair_one_class"},
    "exercise_2_1": {"backbone_shapes", "backbone_layers", "backbone_forward"},
    "exercise_3_1": {"head"},
    "exercise_4_1": {
        "loss_similar_pairs",
        "loss_hinge",
        "loss_beyond_margin",
        "loss_margin_argument",
        "loss_label_shapes",
        "loss_label_count",
        "loss_gradients",
        "loss_gradient_at_zero",
    },
    "exercise_5_2": {"train_history", "train_step", "train_learns"},
    "exercise_6_3": {"roc_auc", "roc_auc_one_kind"},
    "exercise_7_1": {"episode_sampler", "episode_refusals"},
    "exercise_7_2": {"episode_accuracy"},
    "exercise_7_3": {"episode_interval"},
    "exercise_7_4": {"batch_hard"},
}

# Correct implementations that differ from the reference, as students write them.
ALTERNATIVES = {
    ("01_pair_dataset", "exercise_1_1"): '''
import random


class SiameseDataset(Dataset):
    """Pairs by rejection sampling, as in the original notebook."""

    def __init__(self, dataset, seed=None):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.labels = dataset_labels(dataset).tolist()
        if len(set(self.labels)) < 2:
            raise ValueError("SiameseDataset needs at least two classes")

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        rng = random if self.seed is None else random.Random(f"{self.seed}-{self.epoch}-{index}")
        img0, label0 = self.dataset[index]
        should_get_same_class = rng.randint(0, 1)
        while True:
            j = rng.randint(0, len(self.dataset) - 1)
            if (self.labels[j] == int(label0)) == bool(should_get_same_class):
                break
        img1, label1 = self.dataset[j]
        return img0, img1, torch.tensor([int(label0) != int(label1)], dtype=torch.float32)
''',
    ("02_cnn_backbone", "exercise_2_1"): """
import torch.nn.functional as F


class CNNBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(128, 256, kernel_size=3, padding=1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return x
""",
    ("03_embedding_head", "exercise_3_1"): """
class EmbeddingHead(nn.Module):
    def __init__(self, in_features=256 * 3 * 3, embedding_dim=256):
        super().__init__()
        self.fc_a = nn.Linear(in_features, 1024)
        self.fc_b = nn.Linear(1024, embedding_dim)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = torch.relu(self.fc_a(x))
        return torch.relu(self.fc_b(x))
""",
    ("03_embedding_head", "exercise_3_2"): """
class SiameseNetwork(nn.Module):
    def __init__(self, embedding_dim=256):
        super().__init__()
        self.cnn1 = CNNBackbone()
        self.fc1 = EmbeddingHead(embedding_dim=embedding_dim)

    def forward_ind(self, x):
        output = self.cnn1(x)
        output = output.view(output.size()[0], -1)
        output = self.fc1(output)
        return output

    def forward(self, input1, input2):
        output1 = self.forward_ind(input1)
        output2 = self.forward_ind(input2)
        return output1, output2
""",
    ("04_contrastive_loss", "exercise_4_1"): """
def contrastive_loss(out1, out2, label, margin=2.0):
    label = label.view(-1)
    if label.shape[0] != out1.shape[0]:
        raise ValueError("one label per pair")
    d = torch.norm(out1 - out2, dim=1)
    return torch.mean((1 - label) * d ** 2 + label * torch.relu(margin - d) ** 2)
""",
    ("05_training_loop", "exercise_5_1"): """
def get_device():
    return torch.device("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
""",
    ("05_training_loop", "exercise_5_2"): """
def train_one_epoch(net, loader, optimizer, device, margin=2.0, log_every=10):
    net.train()
    history = []
    for i, (img0, img1, label) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        img0, img1, label = img0.to(device), img1.to(device), label.to(device)
        output1, output2 = net(img0, img1)
        loss_contrastive = contrastive_loss(output1, output2, label, margin=margin)
        loss_contrastive.backward()
        optimizer.step()
        if i % log_every == 0:
            history.append(loss_contrastive.item())
    return history
""",
    ("06_evaluation", "exercise_6_1"): """
@torch.no_grad()
def embed(net, images, device="cpu", batch_size=1024):
    net.eval()
    outputs = []
    for i in range(0, len(images), batch_size):
        x = to_float_images(images[i:i + batch_size]).to(device)
        outputs.append(net.forward_ind(x).float().cpu())
    return torch.cat(outputs)
""",
    ("06_evaluation", "exercise_6_2"): """
def verification_accuracy(distances, pair_labels, threshold):
    predicted = (distances >= threshold).float()
    return (predicted == pair_labels.flatten().float()).float().mean().item()


def best_threshold(distances, pair_labels):
    d = sorted(distances.tolist())
    candidates = [d[0] - 1.0] + [(a + b) / 2 for a, b in zip(d, d[1:])] + [d[-1] + 1.0]
    best, best_accuracy = candidates[0], -1.0
    for t in candidates:
        accuracy = verification_accuracy(distances, pair_labels, t)
        if accuracy > best_accuracy:
            best, best_accuracy = t, accuracy
    return float(best)
""",
    ("06_evaluation", "exercise_6_3"): """
def roc_auc(distances, pair_labels):
    labels = pair_labels.flatten()
    diff = distances[labels == 1].double()
    same = distances[labels == 0].double()
    if len(diff) == 0 or len(same) == 0:
        raise ValueError("need same-class and different-class pairs")
    wins = (diff[:, None] > same[None, :]).double().sum() + 0.5 * (diff[:, None] == same[None, :]).double().sum()
    return float(wins / (len(diff) * len(same)))
""",
}


# Prediction questions answered three wrong ways by one student, in otherwise solved notebooks:
# (lesson, exercise cell) → (the test cell that grades it, the student's code; None: left as released).
QUESTION_MISTAKES = {
    ("04_contrastive_loss", "exercise_4_4"): ("distance_after_step", None),  # left blank
    # m where the answer is m²: of the right form, so its self-check in Colab passes
    ("04_contrastive_loss", "exercise_4_5"): (
        "collapsed_loss",
        "def collapsed_loss(p, margin):\n    return p * margin\n",
    ),
    # the head's parameter count that lesson 3 prints, copied as a constant
    ("03_embedding_head", "exercise_3_3"): (
        "head_parameters",
        ("def head_parameters(in_features, hidden, embedding_dim):\n    return 2_622_720\n"),
    ),
}

# Every student make_class writes (each has at least one gradable notebook).
CLASS = {
    "solved",
    "blank",
    "colab",
    "alternative",
    "dora",
    "broken",
    "copied_exercise",
    "questions",
    *BUGS,
    *BONUS_BUGS,
}

# How the grader notes duplicated graded cells (it keeps the student's last copy of an exercise cell).
DUPLICATES_KEPT = "kept the last copy of an exercise, the first of a test"


def make_class(root: Path, solved: Path) -> Path:
    """Write the class's submissions (one folder per student, plus flat LMS-style files) under ``root``; return it."""
    subs = root / "submissions"

    def solved_nb(lesson):
        return nbformat.read(solved / f"{lesson}.ipynb", as_version=4)

    def put(student, lesson, nb, name=None):
        path = subs / student / (name or f"{lesson}.ipynb")
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)

    for lesson in LESSONS:
        put("solved", lesson, solved_nb(lesson))
        put("blank", lesson, release_notebook(lesson))
        (subs / "colab").mkdir(parents=True, exist_ok=True)
        name = f"Copy of {lesson}.ipynb"
        (subs / "colab" / name).write_text(colab_text(solved_nb(lesson), name))
    for student, (bug_lesson, grade_id, old, new) in BUGS.items():
        for lesson in LESSONS:
            nb = solved_nb(lesson)
            if lesson == bug_lesson:
                replace_once(cell_with_id(nb, grade_id), old, new)
            put(student, lesson, nb)
    for student, (bug_lesson, grade_id, old, new) in BONUS_BUGS.items():
        nb = solved_nb(bug_lesson)
        replace_once(cell_with_id(nb, grade_id), old, new)
        put(student, bug_lesson, nb)
    alternative = {lesson: solved_nb(lesson) for lesson in LESSONS}
    for (lesson, grade_id), code in ALTERNATIVES.items():
        rewrite_exercise(alternative[lesson], grade_id, code)
    for lesson, nb in alternative.items():
        put("alternative", lesson, nb)
    questions = {lesson: solved_nb(lesson) for lesson, _ in QUESTION_MISTAKES}
    for (lesson, exercise), (_, code) in QUESTION_MISTAKES.items():
        if code is None:
            cell_with_id(questions[lesson], exercise).source = cell_with_id(
                release_notebook(lesson), exercise
            ).source
        else:
            rewrite_exercise(questions[lesson], exercise, code)
    for lesson, nb in questions.items():
        put("questions", lesson, nb)

    shutil.copy(solved / "01_pair_dataset.ipynb", subs / "dora_01_pair_dataset.ipynb")
    shutil.copy(solved / "04_contrastive_loss.ipynb", subs / "dora_Copy of 04_contrastive_loss (1).ipynb")

    broken = subs / "broken"
    broken.mkdir()
    (broken / "01_pair_dataset.ipynb").write_text("")
    (broken / "02_cnn_backbone.ipynb").write_text((solved / "02_cnn_backbone.ipynb").read_text()[:5000])
    nb = solved_nb("03_embedding_head")
    original = cell_with_id(nb, "head")
    copy = nbformat.from_dict(json.loads(json.dumps(original)))
    copy["id"] = "copied-head-cell"
    nb.cells.insert(nb.cells.index(original) + 1, copy)
    put("broken", "03_embedding_head", nb)
    nb = solved_nb("04_contrastive_loss")
    nb.cells.remove(cell_with_id(nb, "loss_gradients"))
    put("broken", "04_contrastive_loss", nb)
    nb = solved_nb("05_training_loop")
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    put("broken", "05_training_loop", nb)
    put("broken", "06_evaluation", solved_nb("06_evaluation"))

    # Jupyter's copy and paste keeps a cell's metadata: the stub stays above, the student's solved copy below it.
    nb = solved_nb("04_contrastive_loss")
    solved_cell = cell_with_id(nb, "exercise_4_1")
    stub = nbformat.from_dict(
        json.loads(json.dumps(cell_with_id(release_notebook("04_contrastive_loss"), "exercise_4_1")))
    )
    stub["id"] = "exercise-stub"
    nb.cells.insert(nb.cells.index(solved_cell), stub)
    put("copied_exercise", "04_contrastive_loss", nb)
    return subs


def grade_cli(submissions: Path, out: Path, jobs: int, cwd: Path, *options):
    """Run ``python -m autograder grade`` (with more ``options``) and return the finished process."""
    return run_module(
        "autograder",
        "grade",
        submissions,
        "--out",
        out,
        "--jobs",
        jobs,
        *isolation_args(),
        *options,
        cwd=cwd,
        timeout=CLASS_TIMEOUT_S,
    )


WORKER_STAGES = (
    "sandbox set-up",
    "nbgrader before execution",
    "kernel start",
    "kernel shutdown",
    "nbgrader after execution",
    "judge",
)


@pytest.mark.slow
def test_grade_timings_cover_every_stage_of_every_lesson(graded_class):
    """``grade --timings``: each lesson has each worker stage once and a record per code cell, graded tests among them;
    the laps inside the student's cgroup add up to no more than the cgroup counted for the whole worker."""
    _, out = graded_class
    records = [
        json.loads(line) for line in (out.parent / "one-student-timings.jsonl").read_text().splitlines()
    ]
    assert [r["stage"] for r in records].count("course build") == 1
    assert "worker zygote" not in {
        r["stage"] for r in records
    }  # one student: the zygote would not pay for itself
    sandboxed = not isolation_args()  # a sandboxed run makes its kernels' files once, whatever its size
    assert [r["stage"] for r in records].count("kernel files") == (1 if sandboxed else 0)
    solved = json.loads((out.parent / "one-student" / "solved" / f"{LESSONS[0]}.ipynb").read_text())
    for lesson in LESSONS:
        laps = [r for r in records if r.get("lesson") == lesson]
        stages = [r["stage"] for r in laps]
        assert all(stages.count(stage) == 1 for stage in WORKER_STAGES), (lesson, stages)
        kinds = {r["kind"] for r in laps if r["stage"] == "cell"}
        assert kinds == {"teaching", "exercise", "test"}, (lesson, kinds)
    first = [r for r in records if r.get("lesson") == LESSONS[0] and r["stage"] == "cell"]
    assert len(first) == sum(cell["cell_type"] == "code" for cell in solved["cells"])
    whole = next(r for r in records if r["stage"] == "worker, all")
    if "cpu" in whole:  # the machine counts a cgroup's CPU
        laps_cpu = sum(r["cpu"] for r in records if r.get("lesson") and r["stage"] != "worker start")
        assert 0 < laps_cpu <= whole["cpu"] + 0.01, (laps_cpu, whole)
    else:
        assert not SANDBOX_REQUIRED, (
            "a cgroup that counts CPU was required (SIAMESE_REQUIRE_SANDBOX) but not found"
        )


SUMMARY = re.compile(
    r"^graded (\d+) students? \((\d+) in grades\.csv\) in [\d.]+ s, [\d.]+ s per student → .*grades\.csv$"
)


def summary_line(stdout: str, students: int) -> str:
    """The grader's closing line ("graded N students (M in grades.csv) in X s, Y s per student → ..."), checked."""
    lines = [line for line in stdout.splitlines() if line.startswith("graded ")]
    assert len(lines) == 1, stdout
    match = SUMMARY.match(lines[0])
    assert match and match.groups() == (str(students), str(students)), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def solved_dir(tmp_path_factory) -> Path:
    """The solved notebooks, written by ``python -m autograder solutions``."""
    return write_solved_notebooks(tmp_path_factory.mktemp("solutions"))


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory, solved_dir):
    """Grade one student alone (timed), then the whole class in one run with --jobs 2; return (rows, out folder)."""
    root = tmp_path_factory.mktemp("grading")
    alone = root / "one-student"
    shutil.copytree(solved_dir, alone / "solved")
    started = time.perf_counter()
    result = grade_cli(alone, root / "one-out", 1, root, "--timings", root / "one-student-timings.jsonl")
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    timing = (
        f"grading one student's whole course ({len(LESSONS)} lessons, --jobs 1, fresh course): {seconds:.1f} s wall; "
        f"autograder says: {summary_line(result.stdout, 1)}"
    )
    print(f"\n{timing}")
    (root / "one-student-time.txt").write_text(timing + "\n")
    assert float(read_grades(root / "one-out" / "grades.csv")["solved"]["total"]) == AUTOGRADED

    subs = make_class(root, solved_dir)
    out = root / "out"
    started = time.perf_counter()
    result = grade_cli(subs, out, jobs=2, cwd=root)
    print(
        f"grading the class ({len(list(subs.iterdir()))} entries, --jobs 2): {time.perf_counter() - started:.1f} s wall"
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    print(f"autograder says: {summary_line(result.stdout, len(CLASS))}")
    return read_grades(out / "grades.csv"), out


def cell_scores(out: Path, student: str, lesson: str) -> dict[str, float]:
    """grade_id → score of one student's autograded cells in one lesson, from the gradebook (written answers aside)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(lesson, lesson, student)
        return {g.name: g.score for g in notebook.grades if g.name in graded_points(lesson)}


def failed_cells(out: Path, student: str, lesson: str) -> tuple[dict[str, float], set[str]]:
    """A student's autograded cell scores in one lesson, and the cells that lost points."""
    points = graded_points(lesson)
    cells = cell_scores(out, student, lesson)
    return cells, {gid for gid, score in cells.items() if score < points[gid]}


def scores(row: dict[str, str]) -> dict[str, float | None]:
    """A row's lesson scores (None where empty)."""
    return {lesson: float(row[lesson]) if row[lesson] else None for lesson in LESSONS}


# ---------------------------------------------------------------- the class's grades


@pytest.mark.slow
def test_grades_csv_has_the_documented_columns(graded_class):
    """grades.csv: student, student_id, one column per lesson, total, late, status, notes; one row per student."""
    rows, out = graded_class
    with open(out / "grades.csv", newline="") as f:
        assert next(csv.reader(f)) == [
            "student",
            "student_id",
            *syllabus.CORE,
            "total",
            *syllabus.BONUS,
            "late",
            "status",
            "notes",
        ]
    assert set(rows) == CLASS


@pytest.mark.slow
def test_solved_scores_every_autograded_point(graded_class):
    """The solved notebooks get every autograded point; their written answers wait for the instructor."""
    row = graded_class[0]["solved"]
    assert scores(row) == {lesson: MAX_POINTS[lesson] for lesson in LESSONS}
    assert (float(row["total"]), row["status"]) == (AUTOGRADED, WROTE_ALL)


@pytest.mark.slow
def test_report_shows_100_once_the_written_answers_are_graded_by_hand(graded_class, tmp_path):
    """The solved course graded alone awaits its written answers; once they get full marks in the gradebook (as
    formgrader gives them), `python -m autograder report` shows 100, graded."""
    alone = graded_class[1].parent / "one-out"  # the solved student graded alone, by the fixture
    row = read_grades(alone / "grades.csv")["solved"]
    assert (float(row["total"]), row["status"]) == (AUTOGRADED, WROTE_ALL)
    for lesson in LESSONS:
        for grade_id, points in lesson_points(lesson, "answer").items():
            set_manual_score(
                f"sqlite:///{alone / 'course' / 'gradebook.db'}", lesson, grade_id, row["student_id"], points
            )
    result = run_module("autograder", "report", "--from", alone, "--out", tmp_path / "report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    reported = read_grades(tmp_path / "report" / "grades.csv")["solved"]
    assert (reported["total"], reported["status"]) == ("100", "graded"), reported


@pytest.mark.slow
def test_blank_release_scores_0_and_is_graded(graded_class):
    """The unchanged release notebooks score 0 in every lesson, graded (not aborted, not flagged): a written answer
    left as handed out scores 0 at once and waits for no one."""
    row = graded_class[0]["blank"]
    assert scores(row) == dict.fromkeys(LESSONS, 0.0)
    assert (row["total"], row["status"]) == ("0", "graded")


@pytest.mark.slow
def test_colab_saved_notebooks_score_like_the_originals(graded_class):
    """Colab's save (nbformat 4.0, its metadata, "Copy of " names) grades exactly like the solved notebooks."""
    rows = graded_class[0]
    assert scores(rows["colab"]) == scores(rows["solved"])
    assert (float(rows["colab"]["total"]), rows["colab"]["status"]) == (AUTOGRADED, WROTE_ALL)


@pytest.mark.slow
def test_alternative_correct_implementations_score_every_autograded_point(graded_class):
    """Other correct ways of writing every exercise get every autograded point."""
    rows, out = graded_class
    row = rows["alternative"]
    failed = {
        lesson: {
            k: v for k, v in cell_scores(out, "alternative", lesson).items() if v < graded_points(lesson)[k]
        }
        for lesson in LESSONS
    }
    assert not any(failed.values()), failed
    assert (float(row["total"]), row["status"]) == (AUTOGRADED, WROTE_ALL)


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(BUGS))
def test_a_bug_loses_only_its_exercise_points(graded_class, student):
    """One bug in one exercise fails exactly the graded cells listed for it; every other lesson scores full marks."""
    rows, out = graded_class
    lesson, _, _, _ = BUGS[student]
    row = rows[student]
    points = graded_points(lesson)
    cells, failed = failed_cells(out, student, lesson)
    print(f"{student}: {lesson} {row[lesson]}/{MAX_POINTS[lesson]}, failed cells {sorted(failed)}")
    assert failed == BUG_FAILS[student]
    assert all(cells[gid] == 0 for gid in failed), cells
    assert float(row[lesson]) == MAX_POINTS[lesson] - sum(points[gid] for gid in failed)
    assert float(row[lesson]) < MAX_POINTS[lesson]
    others = {name: score for name, score in scores(row).items() if name != lesson}
    assert others == {name: MAX_POINTS[name] for name in others}
    assert row["status"] == WROTE_ALL


@pytest.mark.slow
def test_a_blank_wrong_or_copied_prediction_loses_exactly_its_points(graded_class):
    """Questions graded for real: a blank, a wrong and a copied-constant answer each fail their own cell only."""
    rows, out = graded_class
    for lesson in {lesson for lesson, _ in QUESTION_MISTAKES}:
        points = graded_points(lesson)
        expected = {test for (where, _), (test, _) in QUESTION_MISTAKES.items() if where == lesson}
        cells = cell_scores(out, "questions", lesson)
        failed = {gid for gid, score in cells.items() if score < points[gid]}
        assert failed == expected, (lesson, cells)
        assert all(cells[gid] == 0 for gid in failed), cells
        assert float(rows["questions"][lesson]) == MAX_POINTS[lesson] - sum(points[gid] for gid in failed)


@pytest.mark.slow
def test_the_feedback_of_a_wrong_prediction_explains_the_answer(graded_class):
    """The graded feedback gives the right value's reasoning, which the self-check in Colab does not."""
    page = (graded_class[1] / "feedback" / "questions" / "04_contrastive_loss.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "[FAIL] collapsed_loss predicts the right value" in text, text[-3000:]
    assert f"likely mistake: {COLLAPSE_WHY}" in text


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(BONUS_BUGS))
def test_a_bug_in_the_bonus_lesson_loses_only_its_exercise_points(graded_class, student):
    """A bug in one exercise of lesson 7, handed in alone: exactly its cells fail, in the bonus column; the core
    lessons are missing, so the total is 0 and the status says what is missing, not the bonus."""
    rows, out = graded_class
    lesson, _, _, _ = BONUS_BUGS[student]
    row = rows[student]
    points = graded_points(lesson)
    cells, failed = failed_cells(out, student, lesson)
    assert failed == BUG_FAILS[student]
    assert all(cells[gid] == 0 for gid in failed), cells
    assert float(row[lesson]) == MAX_POINTS[lesson] - sum(points[gid] for gid in failed)
    assert row["total"] == "0"
    assert lesson not in row["status"], row["status"]


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted({**BUGS, **BONUS_BUGS}))
def test_a_bug_fails_no_cell_of_another_exercise(graded_class, student):
    """The graded cells a bug fails all test the exercise that has the bug, not the next one."""
    lesson, exercise, _, _ = {**BUGS, **BONUS_BUGS}[student]
    _, failed = failed_cells(graded_class[1], student, lesson)
    assert failed and failed <= EXERCISE_CELLS[exercise], failed


@pytest.mark.slow
def test_a_copied_exercise_cell_keeps_the_students_work(graded_class):
    """A student who copied the exercise cell and solved it in the copy scores what their notebook shows (full
    points)."""
    row = graded_class[0]["copied_exercise"]
    assert f"04_contrastive_loss: duplicated cells exercise_4_1: {DUPLICATES_KEPT}" in row["notes"], row[
        "notes"
    ]
    assert scores(row)["04_contrastive_loss"] == MAX_POINTS["04_contrastive_loss"]


@pytest.mark.slow
def test_flat_lms_files_are_assigned_to_their_student(graded_class):
    """dora_01_... and "dora_Copy of 04_... (1)" belong to dora; the other core lessons are reported missing, the
    bonus lesson is not."""
    row = graded_class[0]["dora"]
    got = scores(row)
    assert (got["01_pair_dataset"], got["04_contrastive_loss"]) == (
        MAX_POINTS["01_pair_dataset"],
        MAX_POINTS["04_contrastive_loss"],
    )
    missing = [lesson for lesson in LESSONS if lesson not in ("01_pair_dataset", "04_contrastive_loss")]
    assert all(got[lesson] is None for lesson in missing), got
    assert float(row["total"]) == MAX_POINTS["01_pair_dataset"] + MAX_POINTS["04_contrastive_loss"]
    missing_core = [lesson for lesson in missing if lesson in syllabus.CORE]
    assert "no notebook for" in row["status"] and all(lesson in row["status"] for lesson in missing_core), (
        row["status"]
    )
    assert not any(lesson in row["status"] for lesson in syllabus.BONUS), row["status"]  # a bonus is optional


@pytest.mark.slow
def test_broken_notebooks_are_reported_repaired_or_graded(graded_class):
    """Empty and invalid files are reported; stripped metadata, duplicated or deleted test cells are repaired
    and graded."""
    row = graded_class[0]["broken"]
    got = scores(row)
    status, notes = row["status"], row["notes"]
    assert (
        got["01_pair_dataset"] is None
        and "01_pair_dataset not graded: 01_pair_dataset.ipynb is an empty file" in status
    )
    assert got["02_cnn_backbone"] is None and "02_cnn_backbone not graded" in status
    assert "02_cnn_backbone.ipynb is not a readable notebook" in status, status
    # Stripped metadata: the setup and exercise (and question) cells get theirs back (matched by source
    # and "# Exercise N.M");
    # the solved test cells hold hidden tests, so they match no release cell and nbgrader re-adds its own.
    assert got["05_training_loop"] == MAX_POINTS["05_training_loop"], (got, notes)
    assert "05_training_loop: restored stripped nbgrader metadata of 5 cells" in notes, (
        notes
    )  # setup, 5.1-5.4
    assert (
        got["03_embedding_head"] == MAX_POINTS["03_embedding_head"]
        and f"03_embedding_head: duplicated cells head: {DUPLICATES_KEPT}" in notes
    ), notes
    assert got["04_contrastive_loss"] == MAX_POINTS["04_contrastive_loss"]
    assert "04_contrastive_loss: test cells loss_gradients deleted or not recognised" in notes, notes
    assert got["06_evaluation"] == MAX_POINTS["06_evaluation"]
    assert float(row["total"]) == sum(MAX_POINTS[lesson] for lesson in syllabus.CORE[2:])


@pytest.mark.slow
def test_feedback_written_for_graded_students(graded_class):
    """Every graded student's lessons have an HTML feedback file."""
    _, out = graded_class
    for lesson in LESSONS:
        assert (out / "feedback" / "solved" / f"{lesson}.html").is_file()
        assert (out / "feedback" / "colab" / f"{lesson}.html").is_file()


# ---------------------------------------------------------------- release, errors, file names


@pytest.mark.slow
def test_release_matches_the_committed_lessons(tmp_path):
    """`python -m autograder release OUT` writes every student notebook, equal cell by cell to lessons/*.ipynb."""
    result = run_module("autograder", "release", tmp_path / "course", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for lesson in LESSONS:
        path = tmp_path / "course" / "release" / lesson / f"{lesson}.ipynb"
        assert path.is_file(), path
        released, committed = nbformat.read(path, as_version=4), release_notebook(lesson)
        assert [c.source for c in released.cells] == [c.source for c in committed.cells], lesson
        assert [c.cell_type for c in released.cells] == [c.cell_type for c in committed.cells], lesson
        assert [nbgrader_meta(c) for c in released.cells] == [nbgrader_meta(c) for c in committed.cells], (
            lesson
        )


def add_student(db: Path, student: str) -> None:
    """Put a student into a SQLite gradebook, as grading would."""
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("INSERT INTO student (id) VALUES (?)", (student,))


def assignments_and_students(db: Path) -> tuple[list[str], int]:
    """The assignments and the number of students in a SQLite gradebook."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        names = sorted(name for (name,) in connection.execute("SELECT name FROM assignment"))
        return names, connection.execute("SELECT count(*) FROM student").fetchone()[0]


def schema_of(db_url: str) -> dict:
    """Every table of a database with its columns, keys, constraints and indexes, as SQLAlchemy reads them."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(db_url)
    try:
        found = inspect(engine)
        return {
            table: {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                "primary key": found.get_pk_constraint(table)["constrained_columns"],
                "foreign keys": sorted(
                    (tuple(k["constrained_columns"]), k["referred_table"], tuple(k["referred_columns"]))
                    for k in found.get_foreign_keys(table)
                ),
                "unique": sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(table)),
                "indexes": sorted((tuple(i["column_names"]), i["unique"]) for i in found.get_indexes(table)),
            }
            for table in found.get_table_names()
        }
    finally:
        engine.dispose()


def test_a_gradebook_made_in_process_is_the_one_nbgrader_makes(tmp_path, monkeypatch):
    """``create_gradebook`` gives nbgrader's tables and migration stamp, which nbgrader then opens without asking an
    ``alembic`` process; nbgrader's own gradebook (made the slow way) is the reference."""
    import nbgrader.api
    from nbgrader.api import Gradebook

    from autograder.grading.course import create_gradebook, put_environment_on_path

    put_environment_on_path()  # nbgrader runs `alembic` by name
    theirs, ours = f"sqlite:///{tmp_path / 'nbgrader.db'}", f"sqlite:///{tmp_path / 'ours.db'}"
    Gradebook(theirs).close()
    create_gradebook(ours)
    assert schema_of(ours) == schema_of(theirs)
    stamps = []
    for name in ("nbgrader.db", "ours.db"):
        with contextlib.closing(sqlite3.connect(tmp_path / name)) as connection:
            stamps.append(connection.execute("SELECT * FROM alembic_version").fetchall())
    assert stamps[0] == stamps[1] and len(stamps[0]) == 1, stamps

    def no_alembic():
        raise AssertionError("nbgrader asked alembic for a gradebook create_gradebook had made")

    monkeypatch.setattr(nbgrader.api, "get_alembic_version", no_alembic)
    with Gradebook(ours) as gradebook:
        gradebook.add_student("ada")
        assert [s.id for s in gradebook.students] == ["ada"]


def test_an_existing_gradebook_is_left_as_it_is(tmp_path):
    """``create_gradebook`` on a gradebook with a student in it changes no byte of it."""
    from nbgrader.api import Gradebook

    from autograder.grading.course import create_gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    create_gradebook(url)
    with Gradebook(url) as gradebook:
        gradebook.add_student("ada")
    before = (tmp_path / "gradebook.db").read_bytes()
    create_gradebook(url)
    assert (tmp_path / "gradebook.db").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("gradebook", ["given by --db-url", "the course's own"])
def test_the_sandbox_template_is_the_same_course_with_a_gradebook_of_its_own(tmp_path, gradebook):
    """`release OUT [--db-url URL] --sandbox-template T` (grade's one build): T has OUT's notebooks, and a config and
    SQLite gradebook of its own (built, or copied from the course's own before any student is in it), never the
    course's."""
    course, template = tmp_path / "course", tmp_path / "template"
    given_url = gradebook == "given by --db-url"
    record = tmp_path / "record.db" if given_url else course / "gradebook.db"
    given = ["--db-url", f"sqlite:///{record}"] if given_url else []
    result = run_module("autograder", "release", course, *given, "--sandbox-template", template, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for lesson in LESSONS:
        for kind in ("source", "release"):
            built = [
                nbformat.read(c / kind / lesson / f"{lesson}.ipynb", as_version=4) for c in (course, template)
            ]
            assert built[0] == built[1], (lesson, kind)
    config = (template / "nbgrader_config.py").read_text()
    assert f'root = r"{template.resolve()}"' in config, config
    assert str(course.resolve()) not in config and str(record) not in config, config
    assert str(record.resolve()) in (course / "nbgrader_config.py").read_text()
    assert (course / "gradebook.db").exists() == (not given)
    for db in (record, template / "gradebook.db"):
        assert assignments_and_students(db) == (sorted(LESSONS), 0), db
    add_student(template / "gradebook.db", "ada")  # a student in the template's gradebook ...
    assert assignments_and_students(record) == (sorted(LESSONS), 0)  # ... is not in the course's


@pytest.mark.slow
def test_a_course_built_again_after_grading_gives_a_template_without_its_students(tmp_path):
    """A course whose gradebook already holds students (its release deleted, or a lesson added) is built again:
    the template gets a gradebook of its own with no student, not a copy of the course's."""
    course, template = tmp_path / "course", tmp_path / "template"
    for attempt in ("first build", "build after grading"):
        result = run_module("autograder", "release", course, "--sandbox-template", template, cwd=tmp_path)
        assert result.returncode == 0, (attempt, result.stderr)
        if attempt == "first build":
            add_student(course / "gradebook.db", "ada")
            shutil.rmtree(course / "release")
            shutil.rmtree(template)
    assert assignments_and_students(course / "gradebook.db") == (sorted(LESSONS), 1)
    assert assignments_and_students(template / "gradebook.db") == (sorted(LESSONS), 0)


@pytest.mark.parametrize("inside", ["same folder", "inside the course", "around the course"])
def test_a_sandbox_template_overlapping_the_course_is_refused(tmp_path, inside):
    """The template's gradebook is its own: a template that is the course, or inside it or around it, is refused."""
    course = tmp_path / "out" / "course"
    template = {
        "same folder": course,
        "inside the course": course / "t",
        "around the course": tmp_path / "out",
    }[inside]
    result = run_module("autograder", "release", course, "--sandbox-template", template, cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "must be separate folders" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not course.exists()


def files_and_times(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its modification time (ns)."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_a_missing_course_or_template_is_built_alone_and_the_other_left_as_it_is(tmp_path):
    """grade's course build: both on the first run; after that only the folder that is missing, the other untouched."""
    from autograder.grading.course import copy_course_code
    from autograder.grading.run import is_released, prepare_course

    code, out = copy_course_code(tmp_path / "code"), tmp_path / "out"
    course, template = out / "course", out / "sandbox-template"
    prepare_course(out, None, code)
    assert is_released(course) and is_released(template)
    for missing, kept in ((template, course), (course, template)):
        before = files_and_times(kept)
        shutil.rmtree(missing)
        prepare_course(out, None, code)
        assert is_released(missing), missing
        assert assignments_and_students(missing / "gradebook.db") == (sorted(LESSONS), 0), missing
        assert files_and_times(kept) == before, kept


def test_grade_missing_path_exits_1_cleanly(tmp_path):
    """Grading a path that does not exist exits 1 with a message naming it, and no traceback."""
    missing = tmp_path / "no-such-submissions"
    result = run_module("autograder", "grade", missing, "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "error:" in result.stderr and str(missing) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "db_url, says",
    [
        ("not a url", "is not a database URL"),
        (
            "postgresql://nobody@127.0.0.1:9/gradebook",
            "cannot open the gradebook at postgresql://nobody@127.0.0.1:9/gradebook",
        ),
        ("mysql://nobody@127.0.0.1/gradebook", "the database driver 'MySQLdb' is not installed"),
    ],
)
def test_an_unusable_db_url_exits_1_cleanly(tmp_path, db_url, says):
    """A --db-url that cannot be opened is named with what to do, before anything is written."""
    (tmp_path / "subs").mkdir()
    result = run_module(
        "autograder", "grade", tmp_path / "subs", "--out", tmp_path / "out", "--db-url", db_url, cwd=tmp_path
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unrecognisable_stripped_notebook_names_its_file():
    """Stripped metadata and an exercise cell without its "# Exercise" line: not graded, saying which file and cells."""
    nb = release_notebook("04_contrastive_loss")
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    rewrite = cell_with_id(release_notebook("04_contrastive_loss"), "exercise_4_1").source.split("\n", 1)[1]
    nb.cells = [c for c in nb.cells if not c.source.startswith("# Exercise 4.1")] + [
        nbformat.v4.new_code_cell(rewrite)
    ]
    repaired, _, reason = repair.check_notebook(
        nbformat.writes(nb).encode(), "mine.ipynb", release_notebook("04_contrastive_loss")
    )
    assert repaired is None
    assert (
        reason == "mine.ipynb lost its nbgrader metadata and exercise cells exercise_4_1 cannot be recognised"
    )


# ---------------------------------------------------------------- cost of a class


def test_each_student_recorded_reads_only_that_student_back_from_the_gradebook(tmp_path, monkeypatch):
    """grades.csv is rewritten after every student; reading the whole class back from the gradebook each time made
    a run's cost grow with the square of the class (1.5 ms per lesson read, under the lock that recording holds).
    Each student's turn reads that student alone; the whole class is read once before and once after."""
    import threading
    from types import SimpleNamespace

    from autograder.grading import collect, run
    from autograder.grading.timing import Timings

    class_size = 30
    refreshed: list[list[str]] = []
    monkeypatch.setattr(
        run, "refresh_from_gradebook", lambda course, db_url, students: refreshed.append(list(students))
    )
    grading = object.__new__(run.GradingRun)  # the run's state, without building a course
    sids = [f"student{i:03d}" for i in range(class_size)]
    grading.__dict__.update(
        manifest={"students": {sid: {"name": sid, "lessons": {}} for sid in sids}},
        enrolled={sid: run.Enrolled(collect.Student(key=sid, name=sid), sid) for sid in sids},
        course=SimpleNamespace(course=tmp_path),
        db_url=None,
        out=tmp_path,
        unowned=[],
        workdir=tmp_path,
        lock=threading.Lock(),
        running=set(),
        timings=Timings(),
        execute=lambda enrolled, sandbox: {},
        record=lambda enrolled, sandbox, outcomes, alone: None,
    )
    progress = SimpleNamespace(update=lambda: None)
    for sid in sids:
        grading.grade_student(sid, progress)
    assert refreshed == [[sid] for sid in sids], (
        "a student's turn read other students back from the gradebook"
    )
    grading.report()
    assert refreshed[-1] == sids
    assert len(read_grades(tmp_path / "grades.csv")) == class_size


def test_students_with_the_most_notebooks_are_graded_first():
    """With several jobs, the long students go first and the run ends on short ones; ties and the rest by id, and a
    student with nothing to execute is not scheduled."""
    from autograder.grading import collect, run

    def enrolled(sid: str, lessons: int) -> run.Enrolled:
        planned = {LESSONS[k]: run.Planned(nbformat.v4.new_notebook(), "v", []) for k in range(lessons)}
        return run.Enrolled(collect.Student(key=sid, name=sid), sid, planned=planned)

    sizes = {"ada": 1, "bob": 7, "cyd": 0, "dee": 2, "eve": 7, "fay": 1}
    order = run.grading_order({sid: enrolled(sid, n) for sid, n in sizes.items()})
    assert order == ["bob", "eve", "dee", "ada", "fay"], order
