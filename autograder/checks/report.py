"""How checks report, and the helpers every checks module shares.

A check prints ``[PASS] <what was checked>`` to **stdout** and returns ``None``, or raises
``CheckFailure`` (an ``AssertionError``) whose message reads::

    [FAIL] <the property that does not hold>
      input: <what the student's code was given>
      expected: <the right answer>
      got: <what the student's code returned>
      likely mistake: <the usual cause, when it can be told>

A check never writes to stderr, never warns, and hides whatever the student's code writes to
stderr (a tqdm bar, a warning) while it runs. Each check also runs under a time limit, with its
own random seeds, and leaves the caller's random state, gradient mode and default dtype as it
found them. The student's code is called only through ``run_student``, which records its answers
while probing and replays them while judging (``transcript``); ``check`` makes every check a probe
and a judge, and ``judge`` is what the grader calls.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import inspect
import io
import json
import math
import numbers
import random
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import numpy as np
import torch
from torch import nn

from . import transcript

#: Seconds a whole check may run before it fails with "an endless loop?" (nbgrader gives a cell 30 s).
TIME_LIMIT_S = 20.0

F = TypeVar("F", bound=Callable[..., Any])


class CheckFailure(AssertionError):
    """A check failed: the message names the property, the input, the expected and the actual result."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for it in a notebook: the ``[FAIL]`` block alone, not the checks' own traceback."""
        return str(self).splitlines()


class CheckTimeout(BaseException):
    """Raised by the time limit inside student code; a ``BaseException`` so that ``except Exception`` cannot
    swallow it."""


# ---------------------------------------------------------------- messages


def describe(value: Any, limit: int = 300) -> str:
    """A short, readable description of a value for a message (tensors: shape, dtype, a few values)."""
    if isinstance(value, torch.Tensor):
        shape = list(value.shape)
        text = f"tensor of shape {shape}, dtype {str(value.dtype).replace('torch.', '')}"
        if value.numel() == 0:
            return text
        flat = value.detach().cpu().reshape(-1)
        if value.dtype.is_floating_point or value.dtype.is_complex:
            shown = [_number(float(v)) for v in flat[:12].double().tolist()]
        else:
            shown = [str(v) for v in flat[:12].tolist()]
        more = ", ..." if value.numel() > 12 else ""
        if value.dim() == 0:
            return f"{text}, value {shown[0]}"
        return f"{text}, values [{', '.join(shown)}{more}]"
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, float):
        return _number(value)
    if (
        isinstance(value, (list, tuple))
        and len(value) <= 12
        and all(isinstance(v, (int, float)) for v in value)
    ):
        inner = ", ".join(_number(v) if isinstance(v, float) else str(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.6g}"


def type_name(value: Any) -> str:
    """``tensor of shape [..]`` for tensors, else the type's name."""
    if isinstance(value, torch.Tensor):
        return describe(value)
    return type(value).__name__


def passed(what: str) -> None:
    """Report a passed check on stdout (a probe reports nothing: the grader's judge decides)."""
    if not transcript.probing():
        print(f"[PASS] {what}", flush=True)


def failure(
    prop: str, *, input: Any = None, expected: Any = None, got: Any = None, hint: str | None = None
) -> CheckFailure:
    """A ``CheckFailure`` with the standard ``[FAIL]`` message (strings are shown as they are)."""
    lines = [f"[FAIL] {prop}"]
    for key, value in (("input", input), ("expected", expected), ("got", got)):
        if value is not None:
            lines.append(f"  {key}: {value if isinstance(value, str) else describe(value)}")
    if hint:
        lines.append(f"  likely mistake: {hint}")
    return CheckFailure("\n".join(lines))


def fail(
    prop: str, *, input: Any = None, expected: Any = None, got: Any = None, hint: str | None = None
) -> NoReturn:
    """Raise the standard ``CheckFailure``."""
    raise failure(prop, input=input, expected=expected, got=got, hint=hint)


def _error_hint(error: BaseException, what: str = "") -> str | None:
    text = str(error)
    if (
        "Module.__init__() call" in text
        or "has no attribute '_modules'" in text
        or "has no attribute '_parameters'" in text
    ):
        return "call super().__init__() as the first line of __init__"
    if "Expected all tensors to be on the same device" in text:
        return "move every tensor to the same device (.to(device))"
    if "mat1 and mat2 shapes cannot be multiplied" in text:
        return "the input size of a Linear layer does not match the flattened features"
    if "modified by an inplace operation" in text:
        return (
            "optimizer.step() before loss.backward()? the update changes weights that backward() still needs: "
            "zero_grad(), then backward(), then step()"
        )
    if "Trying to backward through the graph a second time" in text:
        return (
            "backward() called twice on the same loss, or a tensor of an earlier step reused: "
            "compute a fresh loss per batch"
        )
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
    if unexpected and "StandInHead" in text:
        return (
            "create the head as the exercise says, EmbeddingHead(embedding_dim=embedding_dim): the network "
            "checks put a stand-in with that signature in its place"
        )
    if (
        unexpected and f"{unexpected.group(1)}=" in what
    ):  # the check's own call: the student's signature lacks it
        return (
            f"the exercise asks for an argument named {unexpected.group(1)}: "
            "add it to the signature (see the exercise's text)"
        )
    if "'StandInHead' object has no attribute" in text:
        return (
            "use the head only by calling it, self.head(features): the network checks put a stand-in "
            "(one Linear layer) in place of your EmbeddingHead, so that exercise 3.1 is not graded twice"
        )
    if "view size is not compatible" in text:
        return "use .reshape(...) or .flatten(1) instead of .view(...)"
    return None


def run_student(exercise: str, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the student's ``func``; turn an exception it raises into a ``CheckFailure`` chained to it.

    ``exercise`` names the unfinished exercise for a ``NotImplementedError``; ``what`` says which call failed.
    While probing, the answer (or the failure) is recorded; while judging, the recorded one comes back
    and the student's code is not called (see ``transcript``).
    """
    record = transcript.current()
    if record is not None and record.replaying:
        return _replay(record, what)
    try:
        result = _call_student(exercise, what, func, *args, **kwargs)
    except CheckFailure as error:
        if record is not None:
            record.record(what, error=error)
        raise
    if record is not None:
        record.record(what, result)
    return result


def run_student_expecting(
    error_type: type[Exception], exercise: str, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any
) -> str | None:
    """Call the student's ``func`` where it should raise ``error_type``: ``None`` if it did, else what it did instead.

    An unfinished exercise or an endless loop still fails the check as ``run_student`` reports it.
    """
    try:
        result = run_student(exercise, what, func, *args, **kwargs)
    except CheckFailure as failed:
        cause = failed.__cause__
        if isinstance(cause, error_type):
            return None
        if cause is None or isinstance(cause, (NotImplementedError, CheckTimeout)):
            raise
        return f"{type(cause).__name__}: {str(cause)[:200]}"
    return f"no error: it returned {type_name(result)}"


def require_refusal(
    error_type: type[Exception],
    exercise: str,
    call: str,
    func: Callable[..., Any],
    *args: Any,
    prop: str,
    expected: str,
    hint: str,
) -> None:
    """Fail with the property ``prop`` unless the student's ``func(*args)`` raises ``error_type``."""
    outcome = run_student_expecting(error_type, exercise, call, func, *args)
    if outcome is not None:
        fail(prop, input=call, expected=expected, got=outcome, hint=hint)


def _replay(record: transcript.Transcript, what: str) -> Any:
    """The recorded answer to the call ``what``: its value, or the recorded failure raised again."""
    try:
        answer = record.next_answer(what)
        if "error" not in answer:
            return record.value(answer)
    except transcript.TranscriptError as error:
        raise CheckFailure(
            f"[FAIL] the answers recorded while your notebook ran do not fit this check ({error})\n"
            "  likely mistake: code that changes the checks or their inputs while they run"
        ) from error
    failure_text = str(answer.get("error"))[:4000]
    cause_type = getattr(builtins, str(answer.get("cause")), None)
    cause = None
    if isinstance(cause_type, type) and issubclass(cause_type, Exception):
        try:
            cause = cause_type(str(answer.get("cause_text")))
        except (
            Exception
        ):  # some need more than a message to be made (UnicodeDecodeError): its class is what counts
            cause = cause_type.__new__(cause_type)
    raise CheckFailure(failure_text) from cause


def _call_student(exercise: str, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except CheckFailure:
        raise
    except CheckTimeout as error:
        raise CheckFailure(
            f"[FAIL] {what} did not finish within {TIME_LIMIT_S:g} s\n"
            "  likely mistake: an endless loop (e.g. a `while` loop whose condition never becomes false)"
        ) from error
    except NotImplementedError as error:
        detail = f" ({error})" if str(error) else ""
        raise CheckFailure(
            f"[FAIL] {exercise} is unfinished: {what} raised NotImplementedError{detail}\n"
            "  Replace the `raise NotImplementedError(...)` line with your code, run that cell, "
            "then run this check again."
        ) from error
    except Exception as error:
        hint = _error_hint(error, what)
        message = f"[FAIL] {what} raised {type(error).__name__}: {error}"
        if hint:
            message += f"\n  likely mistake: {hint}"
        raise CheckFailure(message) from error


# ---------------------------------------------------------------- isolation


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ``CheckTimeout`` after ``seconds`` (POSIX main thread only; a no-op elsewhere or when nested)."""
    usable = (
        seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0]
        == 0  # someone else's alarm (an outer check, pytest-timeout)
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"the check ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # Re-fire every second in case student code swallows the first one with a bare `except:`.
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def isolated(seed: int = 0) -> Iterator[None]:
    """Run a check quietly and reproducibly, restoring the caller's global state afterwards.

    Seeds Python's, NumPy's and PyTorch's global generators with ``seed`` (so that student code that
    uses them is reproducible) and restores their previous states on exit; also restores the gradient
    mode and the default dtype, hides stderr and ignores warnings. The check's small tensors run on one
    CPU thread (fastest for them, and immune to a busy machine's thread contention).
    """
    threads = torch.get_num_threads()
    py_state = random.getstate()
    np_state = np.random.get_state()
    grad_enabled = torch.is_grad_enabled()
    default_dtype = torch.get_default_dtype()
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[]))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        stack.enter_context(_time_limit(TIME_LIMIT_S))
        try:
            torch.set_num_threads(1)
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_grad_enabled(grad_enabled)
            torch.set_default_dtype(default_dtype)
            torch.set_num_threads(threads)


def check(func: F) -> F:
    """Decorator for a check function: isolation, a time limit, ``None`` as the result, and the probe/judge split.

    While grading (``SIAMESE_CHECK_SEED`` set) the check only probes: the grader's judge decides. As a
    self-check it probes and then judges in the same kernel, so that it decides exactly as the grader.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        if transcript.current() is not None:  # inside a probe or a judge
            _decide(func, args, kwargs)
            return None
        seed = transcript.grading_seed()
        answers, cause = _probe(func, seed or 0, args, kwargs, show=seed is not None)
        if seed is None:
            verdict = judge(wrapper, bool(kwargs.get("hidden", False)), answers, 0)
            if verdict.error is not None:
                if cause is not None and type(verdict.error.__cause__) is type(cause):
                    verdict.error.__cause__ = cause  # the student's own exception, with its traceback
                raise verdict.error
            print(verdict.text, flush=True)
        return None

    return wrapper  # type: ignore[return-value]


def _decide(func: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """Run one check to its verdict: ``[PASS]`` on stdout, or a ``CheckFailure``."""
    try:
        with isolated():
            func(*args, **kwargs)
    except CheckTimeout as error:
        raise CheckFailure(
            f"[FAIL] {func.__name__} did not finish within {TIME_LIMIT_S:g} s\n"
            "  likely mistake: an endless loop, or code that is far too slow"
        ) from error
    except CheckFailure:
        raise
    except Exception as error:  # a result so unexpected that the check itself stumbled on it
        raise CheckFailure(
            f"[FAIL] {func.__name__} could not evaluate what your code returned ({type(error).__name__}: {error})\n"
            "  Compare the types and shapes your code returns with the exercise's description."
        ) from error


def _probe(
    func: Callable[..., Any], seed: int, args: tuple, kwargs: dict, show: bool
) -> tuple[list, BaseException | None]:
    """Run the check on the student's code, recording every answer; show the record when the grader asked for it.

    Returns the answers as the judge reads them (through JSON), and what the student's code raised, if anything.
    """
    record = transcript.Transcript(seed)
    cause = None
    try:
        with transcript.running(record):
            _decide(func, args, kwargs)
    except CheckFailure as error:
        if show:
            raise
        cause = error.__cause__
    finally:
        if show:
            _show(func.__name__, bool(kwargs.get("hidden", False)), seed, record.answers)
    return json.loads(json.dumps(record.answers)), cause  # exactly what the grader's judge would read


def _show(name: str, hidden: bool, seed: int, answers: list) -> None:
    """Show the record as one output of the running cell, where the grader's worker finds it."""
    try:
        from IPython.display import display
    except ImportError:  # not in a kernel: nobody to show it to
        return
    payload = {"check": name, "hidden": hidden, "seed": seed, "answers": answers}
    display(
        {transcript.TRANSCRIPT_MIME: payload, "text/plain": f"[{name}: answers recorded for the grader]"},
        raw=True,
    )


@dataclasses.dataclass
class Verdict:
    """A judge's decision on one check: its ``[PASS]`` line or ``[FAIL]`` message, and the failure itself."""

    passed: bool
    text: str
    error: CheckFailure | None = None


def judge(func: Callable[..., Any], hidden: bool, answers: list, seed: int) -> Verdict:
    """Decide a check from the answers a probe recorded.

    Runs in the grader's worker (or, for a self-check, right after the probe): the student's code
    is not called, every expected value is computed here.
    """
    students = [
        transcript.Opaque()
        for name, parameter in inspect.signature(func).parameters.items()
        if parameter.default is inspect.Parameter.empty
    ]
    record = transcript.Transcript(seed, answers)
    printed = io.StringIO()
    try:
        with transcript.running(record), contextlib.redirect_stdout(printed):
            func(*students, hidden=hidden)
    except CheckFailure as error:
        return Verdict(False, str(error), error)
    if record.unused():
        error = CheckFailure(
            f"[FAIL] {func.__name__}: your notebook recorded {record.unused()} answers more than the "
            "check asked for\n  likely mistake: code that changes the checks or their inputs while they run"
        )
        return Verdict(False, str(error), error)
    return Verdict(True, printed.getvalue().strip())


# ---------------------------------------------------------------- numbers and tensors


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing results computed in ``dtype`` in different but correct ways."""
    return {
        torch.float64: (1e-7, 1e-9),
        torch.float32: (1e-4, 1e-5),
        torch.float16: (1e-2, 1e-3),
        torch.bfloat16: (3e-2, 1e-2),
    }.get(dtype, (1e-4, 1e-5))


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest absolute difference (as float64), ``inf`` if shapes differ or a value is not finite."""
    if actual.shape != expected.shape:
        return math.inf
    diff = (actual.detach().double().cpu() - expected.detach().double().cpu()).abs()
    if diff.numel() == 0:
        return 0.0
    if not bool(torch.isfinite(diff).all()):
        return math.inf
    return float(diff.max())


def close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype | None = None,
    scale: float = 1.0,
    extra_atol: float = 0.0,
) -> bool:
    """Whether ``actual`` matches ``expected`` within the dtype's tolerance, relative to the largest expected value."""
    rtol, atol = tolerance(dtype or expected.dtype)
    size = float(expected.detach().double().abs().max()) if expected.numel() else 0.0
    return max_error(actual, expected) <= scale * (atol + rtol * size) + extra_atol


def images(batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A batch of random "images" ``[B, 1, 28, 28]`` with pixels in [0, 1]."""
    return torch.rand(batch, 1, 28, 28, generator=generator, dtype=torch.float64).to(dtype)


def count_all_parameters(net: nn.Module) -> int:
    """All parameters of ``net``, trainable or frozen (shared ones once): what a check compares with the original."""
    return sum(p.numel() for p in net.parameters())


def parameter_shapes(net: nn.Module) -> list[list[int]]:
    """The shapes of ``net``'s parameters, in registration order."""
    return [list(p.shape) for p in net.parameters()]


def copy_parameters_by_order(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s parameters into ``target``'s: each target parameter takes the first unused source one
    of its shape.

    Attribute names and layer containers do not matter, only shapes and order. Raises ``ValueError``
    when the two sets of shapes differ.
    """
    src = list(source.parameters())
    tgt = list(target.parameters())
    if sorted(parameter_shapes(source)) != sorted(parameter_shapes(target)):
        raise ValueError(
            f"parameter shapes differ from the reference: expected {parameter_shapes(target)}, "
            f"got {parameter_shapes(source)}"
        )
    used: set[int] = set()
    with torch.no_grad():
        for p in tgt:
            k = next(k for k, q in enumerate(src) if k not in used and q.shape == p.shape)
            used.add(k)
            p.copy_(src[k].detach().to(p.dtype))


def seed_parameters(net: nn.Module, generator: torch.Generator) -> None:
    """Give every parameter of ``net`` values drawn from ``generator`` (PyTorch's default range, ±1/√fan-in).

    The checks that compare a forward pass with the reference use these weights, not the student's own:
    the judge draws the same ones, so it never needs the values from the student's kernel.
    """
    fan_in = 1
    with torch.no_grad():
        for parameter in net.parameters():
            if parameter.dim() > 1:
                fan_in = math.prod(parameter.shape[1:])
            bound = 1.0 / math.sqrt(max(fan_in, 1))
            values = (
                torch.rand(tuple(parameter.shape), generator=generator, dtype=torch.float64) * 2 - 1
            ) * bound
            parameter.copy_(values.to(parameter.dtype))


def differs(value: float, expected: float, allowed: float) -> bool:
    """Whether ``value`` is not within ``allowed`` of ``expected``: NaN and the infinities always differ.

    Write every comparison of a student's number this way, never ``abs(value - expected) > allowed``, which is
    False for NaN and so lets a NaN answer pass.
    """
    return not (math.isfinite(value) and abs(value - expected) <= allowed)


def to_float(value: Any) -> float | None:
    """A Python float from a number or a one-element tensor/array, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (numbers.Real, np.floating, np.integer)):  # a Fraction too
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().cpu().reshape(-1)[0])
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(-1)[0])  # as a one-element tensor: the judge reads it back as one
    return None
