"""What every question shares: parameters drawn per run, answers that must be numbers, and a judge that explains.

A question is answered as a function of its parameters (``collapsed_loss(p, margin)``), so that its answer
cannot be copied as a number: the grader draws the parameters afresh for every run. A self-check (Colab,
seed 0) checks the answers' form only; the graded judge decides whether they are right and explains.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .report import differs, fail, passed, run_student, to_float, type_name
from .transcript import judge_only, self_checking

FORM_ONLY = " (its form only: whether the answers are right is decided when your notebook is graded)"


def draw(generator: torch.Generator, low: float, high: float) -> float:
    """A parameter of a question, drawn per run and rounded so that its printed form is its value."""
    return round(low + (high - low) * float(torch.rand(1, generator=generator, dtype=torch.float64)), 3)


def draw_int(generator: torch.Generator, low: int, high: int) -> int:
    """A whole-number parameter in ``[low, high]``, drawn per run."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def call_text(name: str, case: tuple) -> str:
    """``name(1.5, 0, 2)``: the call a case stands for, as the student would write it."""
    return f"{name}({', '.join(f'{v:.4g}' if isinstance(v, float) else str(v) for v in case)})"


def answers(question: str, func: Any, name: str, cases: list[tuple]) -> list[float]:
    """The student's answers to every case, each a finite number (the form every question asks for)."""
    found = []
    for case in cases:
        call = call_text(name, case)
        answer = run_student(question, call, func, *case)
        value = to_float(answer)
        if value is None or not math.isfinite(value):
            fail(
                f"{name} returns a number",
                input=call,
                expected="a finite number",
                got=repr(value) if value is not None else type_name(answer),
                hint="return a float or an int (or a 0-d tensor) computed from the arguments",
            )
        found.append(value)
    return found


@judge_only
def verdict(
    name: str, given: list[float], cases: list[tuple], right: Callable[..., float], why: str, what: str
) -> None:
    """The judge's side of a question: in a self-check the form only (``[PASS]``), else each answer against
    ``right``."""
    if self_checking():
        passed(f"{name}: returns a number for every input" + FORM_ONLY)
        return
    judge_answers(name, given, cases, right, why)
    passed(f"{name}: {what}")


@judge_only
def judge_answers(
    name: str, given: list[float], cases: list[tuple], right: Callable[..., float], why: str
) -> None:
    """Each answer equals ``right(*case)``; a wrong one is told the right value and the reasoning ``why``."""
    for case, answer in zip(cases, given):
        expected = right(*case)
        if differs(answer, expected, 1e-6 * (1 + abs(expected))):
            fail(
                f"{name} predicts the right value",
                input=call_text(name, case),
                expected=f"{expected:.6g}",
                got=f"{answer:.6g}",
                hint=why,
            )
