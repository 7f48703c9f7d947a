"""Probe and judge: records are plain data, the judge decides from its own computation, the reference is hidden.

Fast tests on synthetic inputs; the whole pipeline is in ``test_judge_attacks.py``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import nbformat
import pytest
import torch
from torch import nn

from autograder.checks import backbone as backbone_checks
from autograder.checks import data as data_checks
from autograder.checks import evaluate as evaluate_checks
from autograder.checks import loss as loss_checks
from autograder.checks import model as model_checks
from autograder.checks import report, transcript
from autograder.checks import train as train_checks
from autograder.checks.report import CheckFailure
from autograder.grading import judge as judging
from autograder.grading import reference
from solutions import backbone as reference_backbone
from solutions import data as reference_data
from solutions import evaluate as reference_evaluate
from solutions import loss as reference_solutions
from solutions import model as reference_model
from solutions import train as reference_train
from solutions.loss import contrastive_loss as reference_loss
from solutions.model import SiameseNetwork

SEED = 123_456_789


def probe(check, *students, hidden=False, seed=SEED) -> list:
    """What a graded kernel records for ``check`` (the probe alone), as the worker reads it (through JSON)."""
    record = transcript.Transcript(seed)
    try:
        with transcript.running(record):
            check(*students, hidden=hidden)
    except CheckFailure:
        pass
    return json.loads(json.dumps(record.answers))


def wrong_margin_loss(out1, out2, label, margin=2.0):
    """Ignores ``margin``: right for the default only."""
    return reference_loss(out1, out2, label, 2.0)


def wrong_in_float64_loss(out1, out2, label, margin=2.0):
    """Right in float32 (all the visible cases), twice too large in float64 (a hidden case)."""
    return reference_loss(out1, out2, label, margin) * (2 if out1.dtype == torch.float64 else 1)


# ---------------------------------------------------------------- plain data


@pytest.mark.parametrize("dtype", sorted(transcript.DTYPES.values(), key=str), ids=str)
def test_tensors_of_every_kept_dtype_travel_exactly(dtype):
    value = (torch.arange(12, dtype=torch.float64).reshape(3, 4) - 5).to(dtype)
    back = transcript.decode(
        json.loads(json.dumps(transcript.encode(value, transcript.KnownTensors()))), transcript.KnownTensors()
    )
    assert back.dtype == dtype and back.shape == value.shape and torch.equal(back, value)


def test_plain_values_travel_as_they_are():
    value = {
        "a": [1, 2.5, float("nan"), float("-inf"), None, True, "text"],
        "b": (torch.device("cpu"), torch.float32),
    }
    back = transcript.decode(
        json.loads(json.dumps(transcript.encode(value, transcript.KnownTensors()))), transcript.KnownTensors()
    )
    assert back["a"][:2] == [1, 2.5] and math.isnan(back["a"][2]) and back["a"][3] == -math.inf
    assert back["a"][4:] == [None, True, "text"] and back["b"] == (torch.device("cpu"), torch.float32)


def test_gradient_tracking_survives_but_no_graph():
    value = torch.ones(2, requires_grad=True) * 3
    back = transcript.decode(transcript.encode(value, transcript.KnownTensors()), transcript.KnownTensors())
    assert back.requires_grad and back.grad_fn is None and torch.equal(back.detach(), value.detach())


def test_anything_else_is_only_its_type_name():
    back = transcript.decode(
        transcript.encode(object(), transcript.KnownTensors()), transcript.KnownTensors()
    )
    assert type(back).__name__ == "object" and isinstance(back, transcript.Opaque)


def test_known_tensors_are_named_not_sent():
    known = transcript.KnownTensors()
    image = torch.rand(1, 28, 28)
    known.add([torch.zeros(1, 28, 28), image])
    encoded = transcript.encode((image.clone(), image + 1), known)
    assert encoded["items"][0] == {"k": "known", "i": 1} and encoded["items"][1]["k"] == "tensor"
    assert transcript.decode(encoded, known)[0] is image


def test_a_module_is_its_structure():
    """Classes, attributes and parameter shapes (shared ones once), never the values."""
    net = SiameseNetwork()
    encoded = json.loads(json.dumps(transcript.encode(net, transcript.KnownTensors())))
    assert len(json.dumps(encoded)) < 20_000  # 3.1 M parameters, none of them sent
    back = transcript.decode(encoded, transcript.KnownTensors())
    assert [type(m).__name__ for m in back.modules()] == [type(m).__name__ for m in net.modules()]
    assert report.parameter_shapes(back) == report.parameter_shapes(net)
    conv = next(m for m in back.modules() if isinstance(m, nn.Conv2d))
    assert (conv.in_channels, conv.out_channels, tuple(conv.kernel_size), tuple(conv.padding)) == (
        1,
        64,
        (5, 5),
        (2, 2),
    )

    shared = nn.Linear(3, 3)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    again = transcript.decode(transcript.encode(twice, transcript.KnownTensors()), transcript.KnownTensors())
    assert report.count_all_parameters(again) == report.count_all_parameters(twice) == 12


@pytest.mark.parametrize(
    "data, why",
    [
        ({"k": "pickle", "v": "gASV"}, "kind"),
        (
            {"k": "tensor", "dtype": "float32", "shape": [4], "data": "eJxLTEoGAAJNASc="},
            "does not hold",
        ),  # b"abc"
        ({"k": "tensor", "dtype": "float32", "shape": [1 << 30], "data": ""}, "too large"),
        ({"k": "tensor", "dtype": "object", "shape": [1], "data": ""}, "malformed"),
        ({"k": "tensor", "dtype": "float32", "shape": [1], "data": "not base64!"}, "malformed"),
        (
            {
                "k": "list",
                "items": [
                    {
                        "k": "list",
                        "items": [
                            {
                                "k": "list",
                                "items": [
                                    {
                                        "k": "list",
                                        "items": [
                                            {
                                                "k": "list",
                                                "items": [
                                                    {
                                                        "k": "list",
                                                        "items": [
                                                            {
                                                                "k": "list",
                                                                "items": [
                                                                    {
                                                                        "k": "list",
                                                                        "items": [{"k": "list", "items": []}],
                                                                    }
                                                                ],
                                                            }
                                                        ],
                                                    }
                                                ],
                                            }
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            },
            "malformed",
        ),
        (
            {"k": "module", "type": "M", "params": [["w", {"shape": [1 << 24], "dtype": "float32"}]] * 3},
            "too large",
        ),
        (
            {
                "k": "module",
                "type": "M",
                "attrs": {"__class__": {"k": "plain", "v": 1}},
                "children": [["a.b", None]],
            },
            "malformed",
        ),
        ("just text", "malformed"),
    ],
)
def test_a_malformed_record_is_refused(data, why):
    with pytest.raises(transcript.TranscriptError, match=why):
        transcript.decode(data, transcript.KnownTensors())


def test_a_zip_bomb_tensor_is_refused_before_it_is_unpacked():
    import base64
    import zlib

    bomb = base64.b64encode(zlib.compress(b"\0" * (64 << 20))).decode()
    with pytest.raises(transcript.TranscriptError, match="does not hold"):
        transcript.decode(
            {"k": "tensor", "dtype": "float32", "shape": [4], "data": bomb}, transcript.KnownTensors()
        )


# ---------------------------------------------------------------- the judge decides


def test_fresh_seeds_draw_fresh_inputs():
    assert transcript.derive(9) == 9  # a self-check keeps its inputs
    with transcript.running(transcript.Transcript(SEED)):
        first = transcript.derive(9)
    with transcript.running(transcript.Transcript(SEED + 1)):
        second = transcript.derive(9)
    assert len({9, first, second}) == 3


def test_a_correct_record_passes_and_a_wrong_one_fails_with_the_self_checks_message():
    verdict = report.judge(
        loss_checks.check_loss_gradients,
        True,
        probe(loss_checks.check_loss_gradients, reference_loss, hidden=True),
        SEED,
    )
    assert verdict.passed and verdict.text.startswith("[PASS] contrastive_loss: gradients")
    wrong = report.judge(
        loss_checks.check_loss_margin_argument,
        False,
        probe(loss_checks.check_loss_margin_argument, wrong_margin_loss),
        SEED,
    )
    assert not wrong.passed and "the margin argument is ignored" in wrong.text
    with pytest.raises(CheckFailure) as self_check:
        loss_checks.check_loss_margin_argument(wrong_margin_loss)
    assert self_check.value.args[0].splitlines()[0] == wrong.text.splitlines()[0]


def test_answers_to_other_inputs_fail():
    """A record made for another seed (a self-check's, saved at home) answers other questions."""
    replayed = probe(loss_checks.check_loss_similar_pairs, reference_loss, seed=SEED + 1)
    verdict = report.judge(loss_checks.check_loss_similar_pairs, False, replayed, SEED)
    assert not verdict.passed and "recorded in another run" in verdict.text
    # Re-tagged for this run, the answers still fail where they depend on the inputs.
    run = transcript.Transcript(SEED).run
    forged = [dict(answer, run=run) for answer in replayed]
    verdict = report.judge(loss_checks.check_loss_similar_pairs, False, forged, SEED)
    assert not verdict.passed and "[FAIL] same-class pairs cost the mean of d²" in verdict.text


def test_even_answers_that_fit_any_input_fail_in_another_run():
    """The margin check's answers (0 at d = margin, above 0 inside it) would fit any inputs: the run tag stops
    a replay."""
    at_home = probe(loss_checks.check_loss_margin_argument, reference_loss, seed=0)
    assert not report.judge(loss_checks.check_loss_margin_argument, False, at_home, SEED).passed
    assert report.judge(loss_checks.check_loss_margin_argument, False, at_home, 0).passed


def test_a_record_out_of_step_fails():
    answers = probe(loss_checks.check_loss_similar_pairs, reference_loss)
    short = report.judge(loss_checks.check_loss_similar_pairs, False, answers[:-1], SEED)
    assert not short.passed and "no answer was recorded" in short.text
    longer = report.judge(loss_checks.check_loss_similar_pairs, False, answers + answers[-1:], SEED)
    assert not longer.passed and "more than the check asked for" in longer.text
    renamed = [dict(answers[0], what="something else"), *answers[1:]]
    assert not report.judge(loss_checks.check_loss_similar_pairs, False, renamed, SEED).passed


def test_a_forged_value_must_be_the_right_one():
    """Changing a recorded value is no use unless it is the value the judge computes itself."""
    answers = probe(loss_checks.check_loss_similar_pairs, wrong_in_float64_loss)
    assert report.judge(
        loss_checks.check_loss_similar_pairs, False, answers, SEED
    ).passed  # visible: float32 only
    forged = probe(loss_checks.check_loss_similar_pairs, wrong_in_float64_loss, hidden=True)
    for answer in forged:
        if "value" in answer:
            answer["value"] = transcript.encode(torch.tensor(0.25), transcript.KnownTensors())
    assert not report.judge(loss_checks.check_loss_similar_pairs, True, forged, SEED).passed


def test_the_probe_needs_no_reference(monkeypatch):
    """While probing, no check of a lesson calls that lesson's reference: in the sandbox it is a stand-in."""
    import solutions.loss

    def hidden(*args, **kwargs):
        raise AssertionError("the probe called the reference")

    monkeypatch.setattr(solutions.loss, "contrastive_loss", hidden)
    answers = probe(loss_checks.check_loss_gradients, reference_loss, hidden=True)
    monkeypatch.undo()
    assert report.judge(loss_checks.check_loss_gradients, True, answers, SEED).passed


# ---------------------------------------------------------------- test cells

SOURCE = (
    "from autograder.checks import loss as checks\n\nchecks.check_loss_similar_pairs(contrastive_loss)\n"
    "### BEGIN HIDDEN TESTS\nchecks.check_loss_similar_pairs(contrastive_loss, hidden=True)\n### END HIDDEN TESTS\n"
)


def record_output(check, students, hidden=False, seed=SEED):
    payload = {
        "check": check.__name__,
        "hidden": hidden,
        "seed": seed,
        "answers": probe(check, *students, hidden=hidden, seed=seed),
    }
    return nbformat.v4.new_output(
        "display_data", data={judging.TRANSCRIPT_MIME: payload, "text/plain": "[recorded]"}
    )


def test_a_test_cells_checks_are_read_from_the_instructors_source():
    assert judging.check_calls(SOURCE) == [
        judging.CheckCall("check_loss_similar_pairs", False),
        judging.CheckCall("check_loss_similar_pairs", True),
    ]


def test_a_cell_is_judged_from_its_records_only():
    """A numeric execute_result (nbgrader's partial credit), fake [PASS] lines and errors are ignored."""
    outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="[PASS] everything\n" * 5),
        nbformat.v4.new_output("execute_result", data={"text/plain": "20.0"}, execution_count=1),
        record_output(loss_checks.check_loss_similar_pairs, [wrong_in_float64_loss]),
        record_output(loss_checks.check_loss_similar_pairs, [wrong_in_float64_loss], hidden=True),
    ]
    passes, failure = judging.judge_cell("04_contrastive_loss", SOURCE, outputs, SEED)
    assert len(passes) == 1 and failure.startswith("[FAIL] same-class pairs cost the mean of d²")
    new = judging.verdict_outputs(passes, failure)
    assert [o.output_type for o in new] == ["stream", "error"] and new[0].text.count("[PASS]") == 1


def test_a_missing_or_repeated_record_fails():
    record = record_output(loss_checks.check_loss_similar_pairs, [reference_loss])
    error = nbformat.v4.new_output(
        "error", ename="NameError", evalue="name 'contrastive_loss' is not defined", traceback=[]
    )
    assert (
        "NameError: name 'contrastive_loss'"
        in judging.judge_cell("04_contrastive_loss", SOURCE, [error], SEED)[1]
    )
    hidden = record_output(loss_checks.check_loss_similar_pairs, [reference_loss], hidden=True)
    passes, failure = judging.judge_cell("04_contrastive_loss", SOURCE, [record, hidden, hidden], SEED)
    assert len(passes) == 1 and "2 records of it were shown" in failure
    assert judging.judge_cell("04_contrastive_loss", SOURCE, [record, hidden], SEED) == (
        [
            report.judge(
                loss_checks.check_loss_similar_pairs,
                False,
                probe(loss_checks.check_loss_similar_pairs, reference_loss),
                SEED,
            ).text,
            report.judge(
                loss_checks.check_loss_similar_pairs,
                True,
                probe(loss_checks.check_loss_similar_pairs, reference_loss, hidden=True),
                SEED,
            ).text,
        ],
        None,
    )


# ---------------------------------------------------------------- the reference is hidden

LESSONS_HIDDEN = {
    "01_pair_dataset": {
        "solutions.data.SiameseDataset",
        "solutions.data.PairSampler",
        "solutions.benchmark.OriginalSiameseDataset",
        "solutions.data.expected_draws",
        "solutions.data.always_different_accuracy",
    },
    "04_contrastive_loss": {
        "solutions.loss.contrastive_loss",
        "solutions.loss.ContrastiveLoss",
        "solutions.recipes.in_batch_loss",
        "solutions.recipes.batch_distances",
        "solutions.loss.contrastive_loss_gradient",
        "solutions.loss.numerical_gradient",
        "solutions.loss.distance_after_step",
        "solutions.loss.collapsed_loss",
    },
    "05_training_loop": {
        "solutions.train.get_device",
        "solutions.runtime.select_device",
        "solutions.train.train_one_epoch",
        "solutions.fast.fast_train_one_epoch",
        "solutions.fast.train_step",
        "solutions.train.weight_without_zero_grad",
        "solutions.train.logged_losses",
        "solutions.benchmark.original_pipeline",
        "solutions.benchmark.fast_pipeline",
    },
}


@pytest.mark.parametrize("lesson", sorted(LESSONS_HIDDEN))
def test_each_lesson_hides_its_exercises_and_their_equivalents(lesson):
    assert set(reference.exercises(lesson)) == LESSONS_HIDDEN[lesson]


@pytest.fixture(scope="module")
def hidden_copies(tmp_path_factory):
    """The generated ``solutions`` of every lesson, as the sandbox binds them."""
    from pathlib import Path

    import solutions
    from autograder.syllabus import NAMES as LESSONS

    root = tmp_path_factory.mktemp("hidden")
    package = Path(solutions.__file__).parent
    return {lesson: reference.write_hidden_copy(lesson, package, root) for lesson in LESSONS}


def run_in(copy, code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python that imports ``solutions`` from a generated copy."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=copy.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(copy.parent), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )  # as in the sandbox


@pytest.mark.parametrize(
    "use",
    [
        "contrastive_loss(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2))",
        "class Mine(solutions.loss.ContrastiveLoss): pass",
        "functools.wraps(contrastive_loss)(lambda *a: 0)",
        "contrastive_loss.__wrapped__",
        "ns = {}; exec(open(solutions.loss.__file__).read(), ns); ns['contrastive_loss'](1, 2, 3)",
        "import solutions.benchmark, solutions.fast; solutions.fast.train_step",
        "solutions.fast.contrastive_loss(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2))",
    ],
)
def test_every_use_of_a_hidden_reference_names_it(hidden_copies, use):
    code = (
        "import functools, torch, solutions, solutions.loss, solutions.fast\n"
        "from solutions.loss import contrastive_loss\n" + use
    )
    result = run_in(hidden_copies["04_contrastive_loss"], code)
    if (
        "train_step" in use
    ):  # another lesson's reference stays; this one's equivalent is hidden only in lesson 5
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode != 0
    assert "ReferenceSolutionHidden: uses the reference solution (solutions.loss." in result.stderr, (
        result.stderr
    )


def test_a_reimplementation_of_the_loss_elsewhere_in_solutions_is_hidden_too(hidden_copies):
    """``recipes.in_batch_loss`` on a batch of one pair is that pair's contrastive loss: lesson 4 hides it too."""
    code = (
        "import torch, solutions.recipes\n"
        "solutions.recipes.in_batch_loss(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1]), 2.0, 'all')"
    )
    result = run_in(hidden_copies["04_contrastive_loss"], code)
    assert (
        "ReferenceSolutionHidden: uses the reference solution (solutions.recipes.in_batch_loss)"
        in result.stderr
    )
    assert run_in(hidden_copies["05_training_loop"], code).returncode == 0, "lesson 5 may use it"


def test_the_rest_of_solutions_still_works(hidden_copies):
    """Later lessons import what earlier ones built: it is all there, and no compiled file of the reference is."""
    code = (
        "import torch\nfrom solutions.data import SiameseDataset, dataset_labels\n"
        "from solutions.model import SiameseNetwork\nfrom solutions.loss import contrastive_loss\n"
        "net = SiameseNetwork()\nx = torch.rand(2, 1, 28, 28)\na, b = net(x, x)\n"
        "print(float(contrastive_loss(a, b, torch.zeros(2))))"
    )
    assert run_in(hidden_copies["05_training_loop"], code).returncode == 0
    for copy in hidden_copies.values():
        assert not list(copy.rglob("__pycache__")) and not list(copy.rglob("*.pyc"))
    assert "def contrastive_loss" not in (hidden_copies["04_contrastive_loss"] / "loss.py").read_text()
    assert "def contrastive_loss" in (hidden_copies["05_training_loop"] / "loss.py").read_text()


# every object lesson 4 hides, in the order of solutions/loss.py: a use of the whole module uses them all
LESSON_4_HIDDEN = [
    "solutions.loss.contrastive_loss",
    "solutions.loss.ContrastiveLoss",
    "solutions.loss.contrastive_loss_gradient",
    "solutions.loss.numerical_gradient",
    "solutions.loss.distance_after_step",
    "solutions.loss.collapsed_loss",
]


@pytest.mark.parametrize(
    "source, found",
    [
        ("from solutions.loss import contrastive_loss", ["solutions.loss.contrastive_loss"]),
        (
            "import solutions.loss as L\n"
            "def contrastive_loss(a, b, y, margin=2.0):\n    return L.contrastive_loss(a, b, y)",
            ["solutions.loss.contrastive_loss"],
        ),
        (
            "import solutions\nclass Loss(solutions.loss.ContrastiveLoss):\n    pass",
            ["solutions.loss.ContrastiveLoss"],
        ),
        ("import importlib\nm = importlib.import_module('solutions.loss')", LESSON_4_HIDDEN),
        ("import inspect\nfrom solutions import loss\nexec(inspect.getsource(loss))", LESSON_4_HIDDEN),
        ("from autograder.checks.loss import loop_loss", ["autograder.checks.loss.loop_loss"]),
        (
            "from autograder.checks import loss\nloss.allowed_error(1, 2, 3, 4, 5)",
            ["autograder.checks.loss.allowed_error"],
        ),
        (
            "import autograder.checks.report as R\nR.fail = lambda *a, **k: None",
            [],
        ),  # tampering: the judge ignores it
        (
            "import torch.nn.functional as F\ndef contrastive_loss(a, b, y, margin=2.0):\n"
            "    '''As in solutions.loss.'''\n    return F.pairwise_distance(a, b).mean()",
            [],
        ),
        ("from solutions.runtime import set_seed", []),
        ("this is not python", []),
    ],
)
def test_the_syntax_tree_shows_a_use_of_the_reference(source, found):
    assert (
        reference.static_uses(source, reference.exercises("04_contrastive_loss"), reference.check_helpers())
        == found
    )


def test_code_too_deep_for_the_parser_is_judged_unreadable_not_a_crash():
    """``1 + 1 + ...`` 60,000 times runs in a kernel but makes ``ast.parse`` raise RecursionError: the judge
    cannot know what it uses, so it says so (its checks score 0) instead of dying and retrying forever."""
    source = "def contrastive_loss(a, b, y, margin=2.0):\n    pass\n_total = " + " + ".join(["1"] * 60_000)
    used = reference.static_uses(
        source, reference.exercises("04_contrastive_loss"), reference.check_helpers()
    )
    assert used == [reference.UNREADABLE]
    assert (
        reference.describe(used)
        == "is nested too deeply for the grader to read what it uses (write it plainly)"
    )


def test_the_checks_expected_values_refuse_to_run_during_a_probe():
    """A helper that computes expected values runs for the judge, never while the student's code may call it."""
    out1, out2, label = torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([0.0, 1.0])
    assert loss_checks.loop_loss(out1, out2, label) == pytest.approx(1.5 + 0.5 * (2 - 3**0.5) ** 2)
    with transcript.running(transcript.Transcript(SEED)), pytest.raises(transcript.JudgeOnly) as refused:
        loss_checks.loop_loss(out1, out2, label)
    assert reference.runtime_uses(str(refused.value)) == ["autograder.checks.loss.loop_loss"]
    assert "autograder.checks.loss.loop_loss" in reference.check_helpers()


def test_a_use_is_described_for_the_notes():
    assert (
        reference.describe(["solutions.loss.contrastive_loss"])
        == "uses the reference solution (solutions.loss.contrastive_loss)"
    )
    assert (
        reference.describe(["autograder.checks.loss.loop_loss"])
        == "uses the course's checks (autograder.checks.loss.loop_loss)"
    )


def test_a_copy_of_the_reference_is_flagged_for_review_not_scored():
    """Token for token (comments and layout aside) is a copy; a renamed variable is not."""
    import inspect

    from autograder.build import solution_source

    code = solution_source(inspect.getsource(reference_loss))[0]
    assert reference.copies({"4.1": "# my answer\n" + code.replace("    ", "  ")}, "04_contrastive_loss") == [
        "4.1"
    ]
    renamed = code.replace("d = F.pairwise_distance", "dist = F.pairwise_distance").replace(
        "margin - d,", "margin - dist,"
    )
    assert "dist" in renamed and reference.copies({"4.1": renamed}, "04_contrastive_loss") == []
    assert inspect.getsource(reference_loss) != renamed


def test_a_record_cannot_make_the_judge_unpack_without_end():
    """Zeros compress to almost nothing: the judge stops unpacking at its limit, whatever was sent."""
    zeros = transcript.encode(
        torch.zeros(transcript.MAX_ELEMENTS // 2, dtype=torch.float64), transcript.KnownTensors()
    )
    assert len(json.dumps(zeros)) < 64_000  # 4 MB of float64 zeros
    known = transcript.KnownTensors()
    with pytest.raises(transcript.TranscriptError, match="too large"):
        for _ in range(2 * transcript.DECODE_LIMIT // transcript.MAX_ELEMENTS + 2):
            transcript.decode(zeros, known)


# ---------------------------------------------------------------- the checks' judge side, hidden from the kernel

SYNTHETIC_CHECKS = '''"""A checks module with every pattern the grader hides."""
from __future__ import annotations


@judge_only
def expected_value(x):
    return x * 2  # JUDGE 1


def after_return(x):
    value = x + 1
    with nothing():
        if probing():
            return value
        inner = value * 3  # JUDGE 2
    outer = inner + 1  # JUDGE 3
    return outer


def branches(x):
    if probing():
        kept = x  # PROBE 1
    else:
        kept = -x  # JUDGE 4
    if not probing():
        print(kept)  # JUDGE 5
    before = None if probing() else expected_value(x)  # the call is JUDGE 6
    if x:
        if probing():
            return kept  # PROBE 2
        kept = 0  # JUDGE 7
    return kept  # PROBE 3
'''


def test_the_judge_side_is_every_pattern_and_only_it():
    """The regions cover exactly the lines marked JUDGE; the copy keeps every PROBE line and loses every JUDGE one."""
    from autograder.grading import judge_side

    regions = judge_side.judge_side(SYNTHETIC_CHECKS, "autograder.checks.fake")
    assert {r.name for r in regions} == {
        "autograder.checks.fake.expected_value",
        "autograder.checks.fake.after_return",
        "autograder.checks.fake.branches",
    }
    copy = judge_side.without_judge_side(SYNTHETIC_CHECKS, "autograder.checks.fake")
    compile(copy, "copy.py", "exec")
    for number in range(1, 8):
        assert f"JUDGE {number}" in SYNTHETIC_CHECKS and f"JUDGE {number}" not in copy, (number, copy)
    assert all(f"PROBE {number}" in copy for number in range(1, 4)), copy
    assert (
        'expected_value = _StandIn("autograder.checks.fake.expected_value", "the course\'s checks")' in copy
    )
    assert (
        'None if probing() else _StandIn("autograder.checks.fake.branches", "the course\'s checks")()' in copy
    )


def test_a_raise_a_context_manager_may_swallow_hides_nothing_after_it():
    """Only a return surely skips what follows a with block: after a raise there, the code is still the probe's."""
    from autograder.grading import judge_side

    source = (
        "def f(c):\n    with contextlib.suppress(Skip):\n        if probing():\n            raise Skip()\n"
        "        judged = c * 2\n    kept = c + 1\n    return kept\n"
    )
    copy = judge_side.without_judge_side(source, "autograder.checks.fake")
    assert "judged = c * 2" not in copy and "kept = c + 1" in copy, copy


def test_no_helper_of_the_checks_is_left_unused_in_the_probe_copy(probe_copy):
    """A helper that only the judge side calls is judge side too: it must be marked @judge_only, or the kernel's copy
    keeps it whole (a new unmarked one fails here, naming it)."""
    import ast

    sources = {path: path.read_text() for path in (probe_copy / "autograder").rglob("*.py")}
    used = {
        n.id if isinstance(n, ast.Name) else n.attr
        for text in sources.values()
        for n in ast.walk(ast.parse(text))
        if isinstance(n, (ast.Name, ast.Attribute))
    }
    unused = [
        f"{path.name}: {node.name}"
        for path, text in sources.items()
        for node in ast.parse(text).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        and node.name.startswith("_")
        and not node.name.startswith("__")
        and node.name not in used
    ]
    assert unused == []


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    flag = probing()\n    return flag\n",
        "def f():\n    if probing() and True:\n        return\n    return 1\n",
        "def f():\n    if probing():\n        x = 1\n    elif True:\n        x = 2\n    return x\n",
        "def f():\n    return [probing() for _ in range(2)]\n",
        "def f():\n    for x in range(3):\n        if probing():\n            continue\n        judge(x)\n",
        "def f(x):\n    if probing():\n        if x:\n            return 1\n"
        "        else:\n            return 2\n    return judge(x)\n",
        "def f():\n    p = probing\n    if p():\n        return\n    return judge()\n",
        "def f(probe=probing):\n    return probe()\n",
    ],
)
def test_a_use_of_probing_the_grader_cannot_hide_is_refused(source):
    """A new check that puts judge-side code where the grader does not look cannot be released to a kernel."""
    from autograder.grading import judge_side

    with pytest.raises(ValueError, match="probing"):
        judge_side.judge_side(source, "autograder.checks.fake")


def test_the_judge_side_of_the_checks_is_found(tmp_path):
    """The helpers the issue tried (and every other @judge_only helper) and every check's expected values."""
    from pathlib import Path

    import autograder
    from autograder.grading import judge_side

    names = judge_side.stand_in_names(Path(autograder.__file__).parent)
    for name in (
        "autograder.checks.train._reference_loop",
        "autograder.checks.evaluate.pairwise_auc",
        "autograder.checks.loss.loop_loss",
        "autograder.checks.backbone.reference_forward",
        "autograder.checks.model._expected_embeddings",
        "autograder.checks.loss._check_value",
        "autograder.checks.train._step_case",
        "autograder.checks.train._learns_case",
    ):
        assert name in names
    assert names == reference.check_helpers()


@pytest.fixture(scope="module")
def probe_copy(tmp_path_factory):
    """The probe-only ``autograder`` a sandboxed kernel imports."""
    from pathlib import Path

    import autograder
    from autograder.grading import judge_side

    root = tmp_path_factory.mktemp("probe")
    judge_side.write_probe_copy(Path(autograder.__file__).parent, root)
    return root


def run_with_probe_copy(probe_copy, code: str, *args: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python that imports ``autograder`` from the probe copy, the rest from the repository."""
    from helpers import REPO

    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=probe_copy,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": f"{probe_copy}:{REPO}", "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )


ATTACKS_ON_THE_JUDGE_SIDE = {
    "through __wrapped__, by a computed name": (
        "import importlib\nm = importlib.import_module('auto' + 'grader.checks.tr' + 'ain')\n"
        "getattr(m, '_reference' + '_loop').__wrapped__",
        "autograder.checks.train._reference_loop",
    ),
    "with the probe guard switched off": (
        "from autograder.checks import transcript, evaluate\nimport torch\n"
        "record = transcript.Transcript(1)\nrecord.replaying = True\n"
        "with transcript.running(record):\n    evaluate.pairwise_auc(torch.rand(4), torch.tensor([0, 1, 0, 1]))",
        "autograder.checks.evaluate.pairwise_auc",
    ),
    "a check's own expected value, the guard off": (
        "from autograder.checks import transcript, loss\nimport torch\n"
        "record = transcript.Transcript(1, [])\nrecord.replaying = False\n"
        "loss._check_value.__globals__['probing'] = lambda: False\n"
        "loss._check_value(lambda *a: torch.tensor(0.0), torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(2, 1), None, "
        "'t', 'w')",
        "autograder.checks.loss._check_value",
    ),
    "the source of a helper": (
        "import inspect\nfrom autograder.checks import loss\ninspect.getsource(loss.loop_loss)",
        "autograder.checks.loss.loop_loss",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS_ON_THE_JUDGE_SIDE))
def test_the_probe_copy_holds_no_answer(probe_copy, attack):
    """Whatever way a notebook reaches for the judge side, it meets a stand-in that names it (and the grader's note)."""
    code, name = ATTACKS_ON_THE_JUDGE_SIDE[attack]
    result = run_with_probe_copy(probe_copy, code)
    assert result.returncode != 0
    assert reference.runtime_uses(result.stderr) == [name], result.stderr
    assert (
        not (probe_copy / "autograder" / "grading").exists()
        and not (probe_copy / "autograder" / "build.py").exists()
    )
    assert not list(probe_copy.rglob("__pycache__"))


PROBE_EVERY_CHECK = """
import json, sys
from autograder.checks import transcript
calls = json.loads(sys.argv[1])
out = []
for module, imports, line in calls:
    namespace = {"checks": __import__("autograder.checks." + module, fromlist=["_"])}
    for source, names in imports:
        namespace.update({name: getattr(__import__(source, fromlist=["_"]), name) for name in names})
    record = transcript.Transcript(int(sys.argv[2]))
    with transcript.running(record):
        exec(line, namespace)
    out.append(record.answers)
print(json.dumps(out))
"""


def test_a_probe_in_the_copy_is_judged_as_one_in_the_real_package(probe_copy):
    """The copy keeps the probe whole: every check cell of every lesson, run on the reference in the copy, records
    answers that the real judge passes (so a correct student loses nothing to the copy)."""
    import importlib

    from autograder import syllabus
    from autograder.build import SOURCES_DIR, parse_lesson

    calls = []
    for lesson in syllabus.LESSONS:
        module = lesson.checks_module.rpartition(".")[2]
        imports = [
            [spec.partition(":")[0], [spec.partition(":")[2]]]
            for item in lesson.exercises
            for spec in item.writes
        ]
        for cell in parse_lesson(SOURCES_DIR / f"{lesson.name}.py"):
            if cell.kind == "check":
                calls += [
                    [module, imports, line.strip()]
                    for line in cell.body.splitlines()
                    if "checks.check_" in line
                ]
    result = run_with_probe_copy(probe_copy, PROBE_EVERY_CHECK, json.dumps(calls), str(SEED))
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads(result.stdout)
    assert len(recorded) == len(calls) >= 50
    for (module, _, line), answers in zip(calls, recorded):
        call = judging.check_calls(line)[0]
        check = getattr(importlib.import_module(f"autograder.checks.{module}"), call.name)
        verdict = report.judge(check, call.hidden, answers, SEED)
        assert verdict.passed, (line, verdict.text)


# ---------------------------------------------------------------- questions

QUESTIONS = [
    (data_checks.check_expected_draws, reference_data.expected_draws),
    (data_checks.check_always_different_accuracy, reference_data.always_different_accuracy),
    (backbone_checks.check_backbone_side, reference_backbone.backbone_side),
    (backbone_checks.check_conv_parameters, reference_backbone.conv_parameters),
    (model_checks.check_head_parameters, reference_model.head_parameters),
    (model_checks.check_all_zero_share, reference_model.all_zero_share),
    (loss_checks.check_distance_after_step, reference_solutions.distance_after_step),
    (loss_checks.check_collapsed_loss, reference_solutions.collapsed_loss),
    (train_checks.check_weight_without_zero_grad, reference_train.weight_without_zero_grad),
    (train_checks.check_logged_losses, reference_train.logged_losses),
    (evaluate_checks.check_overlap_best_accuracy, reference_evaluate.overlap_best_accuracy),
    (evaluate_checks.check_overlap_auc, reference_evaluate.overlap_auc),
]


@pytest.mark.parametrize("question, answer", QUESTIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_a_question_self_checks_its_form_only_and_is_judged_when_graded(question, answer):
    """In Colab a wrong answer of the right form passes its self-check; graded, it fails with the explanation."""

    def wrong(*args):
        return 0.5 * answer(*args)

    question(wrong)  # the self-check: a number for every input
    verdict = report.judge(question, True, probe(question, wrong, hidden=True), SEED)
    assert not verdict.passed and "expected" in verdict.text and "likely mistake" in verdict.text, (
        verdict.text
    )
    assert report.judge(question, True, probe(question, answer, hidden=True), SEED).passed
    with pytest.raises(CheckFailure, match="returns a number"):
        question(lambda *args: "about two")


@pytest.mark.parametrize("question, answer", QUESTIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_a_question_answered_with_constants_copied_from_the_public_checks_fails(question, answer):
    """The self-check's inputs are public; the graded ones are drawn per run, so their answers cannot be copied."""
    public = probe(question, answer, seed=0)
    constants = iter([transcript.decode(a["value"], transcript.KnownTensors()) for a in public])

    def copied(*args):
        return next(constants)

    assert report.judge(question, False, probe(question, answer, seed=0), 0).passed
    verdict = report.judge(question, False, probe(question, copied), SEED)
    assert not verdict.passed, verdict.text
