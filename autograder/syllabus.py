"""The course table: every lesson, its files, and the ``solutions`` objects that answer its exercises.

This is the one place the course is described. The notebook generator (``autograder.build``), the
grader (its lesson list, its hidden reference, its gradebook columns), ``demo_class``, the checks'
failure messages and the README's course table all read it, and ``tests/test_syllabus.py`` fails
when a file disagrees with it. Points are not here: they come from the lesson sources'
``[check id N]`` and ``[answer id N]`` headers, next to the cells they grade.

Adding a lesson is one ``Lesson`` row below plus its files: ``lessons/src/NN_name.py``, its
``solutions`` module and its ``autograder.checks`` module (then ``make lessons``).

This module is plain data with no imports beyond the standard library: it is read in the student's
kernel (by the checks) as well as by the instructor's pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    """One exercise: the ``solutions`` objects a student writes, and others that would answer it as well."""

    number: str  # "4.1"
    # "solutions.loss:contrastive_loss": pulled into the exercise cell, hidden while graded
    writes: tuple[str, ...]
    also_answered_by: tuple[str, ...] = ()  # hidden while the lesson is graded too

    @property
    def grade_id(self) -> str:
        """The nbgrader grade id of the exercise's cell: ``exercise_4_1``."""
        return EXERCISE_GRADE_ID_PREFIX + self.number.replace(".", "_")

    def names(self) -> tuple[str, ...]:
        """The names the student defines: ``("contrastive_loss",)``."""
        return tuple(spec.partition(":")[2] for spec in self.writes)

    def answers(self) -> tuple[str, ...]:
        """Every ``module:name`` of ``solutions`` that answers this exercise."""
        return self.writes + self.also_answered_by


@dataclass(frozen=True)
class Lesson:
    """One lesson: notebook ``lessons/<name>.ipynb``, source ``lessons/src/<name>.py``, and its modules."""

    name: str  # "04_contrastive_loss"
    title: str
    solutions_module: str  # "solutions.loss"
    checks_module: str  # "autograder.checks.loss"
    exercises: tuple[Exercise, ...]
    gpu: bool = False  # Colab opens it on a GPU runtime (the lessons that train)
    bonus: bool = False  # a column of its own in grades.csv, outside the total of 100

    @property
    def notebook(self) -> str:
        """The student notebook's path in the repository."""
        return f"lessons/{self.name}.ipynb"

    @property
    def source(self) -> str:
        """The lesson source's path in the repository."""
        return f"lessons/src/{self.name}.py"


LESSONS: tuple[Lesson, ...] = (
    Lesson(
        "01_pair_dataset",
        "Pairs of images",
        "solutions.data",
        "autograder.checks.data",
        (
            Exercise(
                "1.1",
                ("solutions.data:SiameseDataset",),
                ("solutions.data:PairSampler", "solutions.benchmark:OriginalSiameseDataset"),
            ),
            Exercise("1.2", ("solutions.data:expected_draws",)),
            Exercise("1.3", ("solutions.data:always_different_accuracy",)),
        ),
    ),
    Lesson(
        "02_cnn_backbone",
        "The CNN backbone",
        "solutions.backbone",
        "autograder.checks.backbone",
        (
            Exercise("2.1", ("solutions.backbone:CNNBackbone",)),
            Exercise("2.2", ("solutions.backbone:backbone_side",)),
            Exercise("2.3", ("solutions.backbone:conv_parameters",)),
        ),
    ),
    Lesson(
        "03_embedding_head",
        "The embedding head and the Siamese network",
        "solutions.model",
        "autograder.checks.model",
        (
            Exercise("3.1", ("solutions.model:EmbeddingHead",)),
            Exercise("3.2", ("solutions.model:SiameseNetwork",), ("solutions.recipes:NormalizedNetwork",)),
            Exercise("3.3", ("solutions.model:head_parameters",)),
            Exercise("3.4", ("solutions.model:all_zero_share",)),
        ),
    ),
    Lesson(
        "04_contrastive_loss",
        "The contrastive loss",
        "solutions.loss",
        "autograder.checks.loss",
        (
            Exercise(
                "4.1",
                ("solutions.loss:contrastive_loss",),
                (
                    "solutions.loss:ContrastiveLoss",
                    "solutions.recipes:in_batch_loss",
                    "solutions.recipes:batch_distances",
                ),
            ),
            Exercise("4.2", ("solutions.loss:contrastive_loss_gradient",)),
            Exercise("4.3", ("solutions.loss:numerical_gradient",)),
            Exercise("4.4", ("solutions.loss:distance_after_step",)),
            Exercise("4.5", ("solutions.loss:collapsed_loss",)),
        ),
    ),
    Lesson(
        "05_training_loop",
        "The training loop",
        "solutions.train",
        "autograder.checks.train",
        (
            Exercise("5.1", ("solutions.train:get_device",), ("solutions.runtime:select_device",)),
            Exercise(
                "5.2",
                ("solutions.train:train_one_epoch",),
                (
                    "solutions.fast:fast_train_one_epoch",
                    "solutions.fast:train_step",
                    "solutions.benchmark:original_pipeline",
                    "solutions.benchmark:fast_pipeline",
                ),
            ),
            Exercise("5.3", ("solutions.train:weight_without_zero_grad",)),
            Exercise("5.4", ("solutions.train:logged_losses",)),
        ),
        gpu=True,
    ),
    Lesson(
        "06_evaluation",
        "Evaluation",
        "solutions.evaluate",
        "autograder.checks.evaluate",
        (
            Exercise("6.1", ("solutions.evaluate:embed",)),
            Exercise(
                "6.2",
                ("solutions.evaluate:verification_accuracy", "solutions.evaluate:best_threshold"),
                ("solutions.evaluate:evaluate", "solutions.evaluate:evaluate_embeddings"),
            ),
            Exercise("6.3", ("solutions.evaluate:roc_auc",)),
            Exercise("6.4", ("solutions.evaluate:overlap_best_accuracy",)),
            Exercise("6.5", ("solutions.evaluate:overlap_auc",)),
        ),
        gpu=True,
    ),
    Lesson(
        "07_one_shot",
        "Recognising classes never seen, from one example each (bonus)",
        "solutions.oneshot",
        "autograder.checks.oneshot",
        (
            Exercise("7.1", ("solutions.oneshot:sample_episodes",)),
            Exercise("7.2", ("solutions.oneshot:episode_accuracies",)),
            Exercise("7.3", ("solutions.oneshot:mean_with_interval",)),
            # recipes.in_batch_loss(..., "hard") calls batch_hard_loss, so it is no answer once that is
            # hidden; hiding it would break the lesson's all-pairs training, which it runs.
            Exercise("7.4", ("solutions.oneshot:batch_hard_loss",)),
        ),
        gpu=True,
        bonus=True,
    ),
)

NAMES: tuple[str, ...] = tuple(lesson.name for lesson in LESSONS)
CORE: tuple[str, ...] = tuple(lesson.name for lesson in LESSONS if not lesson.bonus)  # graded out of 100
BONUS: tuple[str, ...] = tuple(
    lesson.name for lesson in LESSONS if lesson.bonus
)  # graded apart from the total


def lesson(name: str) -> Lesson:
    """The lesson called ``name`` ("04_contrastive_loss"); ``KeyError`` naming the lessons there are."""
    for row in LESSONS:
        if row.name == name:
            return row
    raise KeyError(f"no lesson {name!r}; the course has {', '.join(NAMES)}")


def exercise(number: str) -> Exercise:
    """The exercise numbered ``number`` ("4.1")."""
    for row in LESSONS:
        for item in row.exercises:
            if item.number == number:
                return item
    raise KeyError(f"no exercise {number!r} in the course table")


EXERCISE_GRADE_ID_PREFIX = "exercise_"


def exercise_number(grade_id: object) -> str | None:
    """The exercise a grade id belongs to (``exercise_4_1`` → ``"4.1"``); None for any other cell's id."""
    text = str(grade_id)
    if not text.startswith(EXERCISE_GRADE_ID_PREFIX):
        return None
    return text.removeprefix(EXERCISE_GRADE_ID_PREFIX).replace("_", ".")


def label(number: str, name: str | None = None) -> str:
    """How a failure message names an exercise: ``contrastive_loss (exercise 4.1)``; ``name`` picks one of its
    objects."""
    names = exercise(number).names()
    if name is not None and name not in names:
        raise KeyError(f"exercise {number} asks for {', '.join(names)}, not {name}")
    return f"{name or names[0]} (exercise {number})"
