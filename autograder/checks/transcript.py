"""Probe and judge: how a check runs in the student's kernel and is decided somewhere else.

Every check calls the student's code only through ``report.run_student``. A check runs in one of
three ways:

* **self-check** (Colab, tests): it calls the student's code and decides, all in one kernel;
* **probe** (grading, in the student's sandbox, ``SIAMESE_CHECK_SEED`` set): it calls the
  student's code on inputs drawn from that seed and records every answer as plain data (numbers,
  strings, tensors as raw bytes: never a pickle), then shows the record as one output of the test
  cell (MIME type ``TRANSCRIPT_MIME``). It decides nothing that counts;
* **judge** (the grader's worker, a process that never runs a line of the student's code): it runs
  the same check with the same seed, and each call of the student's code returns the recorded
  answer instead. Every expected value is computed here, so a forged record passes only if it holds
  the right answers to inputs drawn fresh for this grading run.

The part of a check that computes expected values (the judge side) runs only when ``probing()`` is
false, or in a helper marked ``@judge_only``. A graded kernel never sees it: the grader gives the
kernel a copy of ``autograder`` in which that code is a stand-in (``autograder.grading.judge_side``,
which also lists the patterns of ``probing()`` it understands), and the lesson's reference is hidden too.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import functools
import hashlib
import math
import numbers
import os
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from data_utils.env import CHECK_SEED_VAR

SEED_VARIABLE = CHECK_SEED_VAR
TRANSCRIPT_MIME = "application/vnd.siamese.transcript+json"
MAX_ELEMENTS = 1 << 20  # per tensor: far above what any check asks for (25,000 at most), far below what hurts
DECODE_LIMIT = 1 << 24  # all the tensors the judge unpacks from one record (zlib makes zeros tiny to send)
MODULE_ELEMENTS = (
    1 << 25
)  # the parameters of one rebuilt module (zeros: values are never sent); 2 networks are 6.2 M
MAX_DEPTH = 6
MAX_ITEMS = 10_000
DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.bool,
    )
}


def _builtin_name(error: BaseException) -> str:
    """The name of the nearest built-in class of ``error`` (a student's ``class BadLabel(ValueError)`` is a
    ValueError)."""
    for cls in type(error).__mro__:
        if getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return type(error).__name__


class TranscriptError(ValueError):
    """A record that is not what the probe writes: malformed, too large, or out of step with the check."""


class Transcript:
    """The student's answers during one check, in the order the check asked for them."""

    def __init__(self, seed: int, answers: list[dict] | None = None) -> None:
        self.seed = seed
        # Every answer carries a tag of the run it was recorded in: a record saved in another run (at home, where
        # the reference is installed) answers other inputs, and fails here even where its values would still fit.
        self.run = hashlib.sha256(f"siamese-run:{seed}".encode()).hexdigest()[:16]
        self.replaying = answers is not None
        self.answers: list[dict] = list(answers or [])
        self.position = 0
        self.known = KnownTensors()

    def remember(self, tensors: list[torch.Tensor]) -> None:
        """Tensors the check made itself (a dataset's images): an answer equal to one is recorded by its index."""
        self.known.add(tensors)

    def record(self, what: str, value: Any = None, error: BaseException | None = None) -> None:
        """Probe: keep the answer to one call (or the failure it caused)."""
        if error is not None:
            cause = error.__cause__
            self.answers.append(
                {
                    "what": what,
                    "run": self.run,
                    "error": str(error)[:4000],
                    "cause": _builtin_name(cause) if cause is not None else None,
                    "cause_text": str(cause)[:500] if cause is not None else None,
                }
            )
        else:
            self.answers.append({"what": what, "run": self.run, "value": encode(value, self.known)})

    def next_answer(self, what: str) -> dict:
        """Judge: the recorded answer to the next call, which must be the call ``what``."""
        if self.position >= len(self.answers):
            raise TranscriptError(f"no answer was recorded for {what}")
        answer = self.answers[self.position]
        self.position += 1
        if not isinstance(answer, dict) or answer.get("what") != what:
            raise TranscriptError(
                f"the record answers {str(answer.get('what') if isinstance(answer, dict) else answer)[:200]!r} "
                f"where the check asks {what!r}"
            )
        if answer.get("run") != self.run:
            raise TranscriptError(f"the answer to {what!r} was recorded in another run, for other inputs")
        return answer

    def value(self, answer: dict) -> Any:
        """Judge: an answer's value, decoded."""
        return decode(answer.get("value"), self.known)

    def unused(self) -> int:
        """Judge: how many recorded answers the check did not ask for."""
        return len(self.answers) - self.position


class KnownTensors:
    """The check's own tensors, so that an answer equal to one of them is recorded as its index, not its bytes.

    It also counts the elements the judge has unpacked from the record so far (at most ``DECODE_LIMIT``).
    """

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.index: dict[tuple, int] = {}
        self.decoded = 0

    @staticmethod
    def key(tensor: torch.Tensor) -> tuple:
        """Identity by value: dtype, shape and bytes."""
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        return str(tensor.dtype), tuple(tensor.shape), hashlib.blake2b(raw, digest_size=16).digest()

    def add(self, tensors: list[torch.Tensor]) -> None:
        """Remember ``tensors`` (detached CPU tensors), in order."""
        for tensor in tensors:
            self.index.setdefault(self.key(tensor), len(self.tensors))
            self.tensors.append(tensor)

    def find(self, tensor: torch.Tensor) -> int | None:
        """The index of a remembered tensor equal to ``tensor``."""
        if not self.tensors or str(tensor.dtype).removeprefix("torch.") not in DTYPES:
            return None
        return self.index.get(self.key(tensor))


_current: Transcript | None = None


@contextlib.contextmanager
def running(transcript: Transcript | None) -> Iterator[Transcript | None]:
    """Make ``transcript`` the one that ``run_student`` records into or replays from, for one check."""
    global _current
    previous, _current = _current, transcript
    try:
        yield transcript
    finally:
        _current = previous


def current() -> Transcript | None:
    """The transcript of the check running now (``None`` for a self-check)."""
    return _current


def probing() -> bool:
    """True while a check records answers in the sandbox: the lesson's reference is not available then."""
    return _current is not None and not _current.replaying


def self_checking() -> bool:
    """True while a self-check decides in the student's own kernel (Colab): a question is checked for its form only."""
    return _current is not None and _current.replaying and _current.seed == 0


class JudgeOnly(RuntimeError):
    """A helper that computes the checks' expected values was called while a probe ran the student's code."""


def judge_only(func: Any) -> Any:
    """Mark a helper that computes expected values (an answer, in effect): it refuses to run during a probe.

    A probe runs the student's code, which could call it; the judge, and a self-check's judge, may. While
    grading, the kernel's copy of the checks holds a stand-in in its place (``autograder.grading.judge_side``).
    """

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if probing():
            raise JudgeOnly(
                f"uses the course's checks ({func.__module__}.{func.__qualname__}): the checks' expected "
                "values are not an answer"
            )
        return func(*args, **kwargs)

    return guarded


def grading_seed() -> int | None:
    """The seed the grader drew for this run, when the kernel runs under the grader."""
    text = os.environ.get(SEED_VARIABLE, "")
    return int(text) if text.isdigit() else None


def derive(number: int) -> int:
    """A seed for one of a check's random inputs: ``number`` itself in a self-check, else mixed with the run's seed.

    Self-checks keep their fixed inputs (so that a message reads the same every time); a graded run
    draws new ones, so that no answer can be computed in advance from the public checks.
    """
    base = _current.seed if _current is not None else 0
    if base == 0:
        return number
    digest = hashlib.blake2b(f"{base}:{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def generator_for(number: int) -> torch.Generator:
    """A ``torch.Generator`` seeded with ``derive(number)``."""
    return torch.Generator().manual_seed(derive(number))


# ---------------------------------------------------------------- plain data, both ways


def encode(value: Any, known: KnownTensors, depth: int = 0) -> dict:
    """``value`` as JSON-ready plain data; anything that is not data is kept as its type's name only."""
    if depth > MAX_DEPTH:
        return {"k": "opaque", "type": type(value).__name__}
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 62:
            return {"k": "float", "v": repr(float(value))}
        return {"k": "plain", "v": value if not isinstance(value, str) else value[:2000]}
    if isinstance(value, numbers.Real) and not isinstance(value, np.integer):
        # A float, numpy's float64 (whose repr is np.float64(...) since numpy 2), a Fraction: as a float.
        return {"k": "float", "v": repr(float(value))}
    if isinstance(value, torch.Tensor):
        return _encode_tensor(value, known)
    if isinstance(value, (list, tuple)) and len(value) <= MAX_ITEMS:
        return {
            "k": type(value).__name__ if type(value) in (list, tuple) else "list",
            "items": [encode(v, known, depth + 1) for v in value],
        }
    if isinstance(value, dict) and len(value) <= MAX_ITEMS and all(isinstance(k, str) for k in value):
        return {"k": "dict", "items": [[k, encode(v, known, depth + 1)] for k, v in value.items()]}
    if isinstance(value, torch.device):
        return {"k": "device", "v": str(value)}
    if isinstance(value, torch.dtype):
        return {"k": "dtype", "v": str(value).removeprefix("torch.")}
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        # An array (0-d too) as the tensor it equals, a numpy scalar as its Python number: what to_float and the
        # checks make of each in the kernel, the judge makes of its record.
        return encode(torch.as_tensor(value) if isinstance(value, np.ndarray) else value.item(), known, depth)
    if isinstance(value, nn.Module):
        return _encode_module(value, {}, {}, 0)
    return {"k": "opaque", "type": type(value).__name__}


def _encode_tensor(value: torch.Tensor, known: KnownTensors) -> dict:
    tensor = value.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    index = known.find(tensor)
    if index is not None:
        return {"k": "known", "i": index}
    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in DTYPES or tensor.numel() > MAX_ELEMENTS:
        return {"k": "opaque", "type": f"tensor of shape {list(tensor.shape)}, dtype {dtype}"}
    raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    return {
        "k": "tensor",
        "dtype": dtype,
        "shape": list(tensor.shape),
        "requires_grad": bool(value.requires_grad),
        "device": value.device.type,
        "data": base64.b64encode(zlib.compress(raw, 1)).decode(),
    }


def _plain_attribute(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return not isinstance(value, str) or len(value) <= 200
    return (
        isinstance(value, tuple) and len(value) <= 8 and all(isinstance(v, (bool, int, float)) for v in value)
    )


def _encode_module(
    module: nn.Module, modules: dict[int, int], parameters: dict[int, int], depth: int
) -> dict:
    """A module's structure: its class, plain attributes, parameters (shape, dtype, trainable; not their values),
    buffers and submodules, in registration order. A module or parameter met again is named by its number."""
    if id(module) in modules:
        return {"k": "module_ref", "i": modules[id(module)]}
    modules[id(module)] = len(modules)
    cls = type(module)
    builtin = cls.__module__.startswith("torch.nn.modules.") and getattr(nn, cls.__name__, None) is cls
    attrs = {
        k: encode(v, KnownTensors())
        for k, v in vars(module).items()
        if not k.startswith("_") and _plain_attribute(v)
    }
    params = []
    for name, param in module._parameters.items():
        if param is None:
            params.append([name, None])
        elif id(param) in parameters:
            params.append([name, {"ref": parameters[id(param)]}])
        else:
            parameters[id(param)] = len(parameters)
            params.append(
                [
                    name,
                    {
                        "shape": list(param.shape),
                        "dtype": str(param.dtype).removeprefix("torch."),
                        "requires_grad": bool(param.requires_grad),
                    },
                ]
            )
    buffers = [
        [name, None if b is None else {"shape": list(b.shape), "dtype": str(b.dtype).removeprefix("torch.")}]
        for name, b in module._buffers.items()
    ]
    children = [
        [
            name,
            None if child is None or depth >= 12 else _encode_module(child, modules, parameters, depth + 1),
        ]
        for name, child in module._modules.items()
    ]
    return {
        "k": "module",
        "type": cls.__name__,
        "builtin": builtin,
        "attrs": attrs,
        "params": params,
        "buffers": buffers,
        "children": children,
    }


class Opaque:
    """Stands for something the student's code returned that is not plain data (the judge sees only its type's name)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object>"


def _opaque(type_name: Any, module: bool) -> Any:
    name = type_name if isinstance(type_name, str) and type_name.isidentifier() else "object"
    base = (nn.Module,) if module else (Opaque,)
    cls = type(name[:80], base, {"__repr__": Opaque.__repr__})
    if module:
        instance = cls()
        return instance
    return cls()


def decode(data: Any, known: KnownTensors, depth: int = 0) -> Any:
    """Plain data written by ``encode`` back into values; raise ``TranscriptError`` on anything else."""
    if not isinstance(data, dict) or depth > MAX_DEPTH + 1:
        raise TranscriptError("a value in the record is malformed")
    kind = data.get("k")
    if kind == "plain":
        value = data.get("v")
        if value is None or isinstance(value, (bool, int, str)):
            return value
    elif kind == "float":
        return float(str(data.get("v")))
    elif kind in ("list", "tuple"):
        items = data.get("items")
        if isinstance(items, list) and len(items) <= MAX_ITEMS:
            values = [decode(v, known, depth + 1) for v in items]
            return values if kind == "list" else tuple(values)
    elif kind == "dict":
        items = data.get("items")
        if isinstance(items, list) and all(
            isinstance(i, list) and len(i) == 2 and isinstance(i[0], str) for i in items
        ):
            return {key: decode(v, known, depth + 1) for key, v in items}
    elif kind == "device":
        return torch.device(str(data.get("v")))
    elif kind == "dtype" and data.get("v") in DTYPES:
        return DTYPES[data["v"]]
    elif kind == "known":
        index = data.get("i")
        if isinstance(index, int) and 0 <= index < len(known.tensors):
            return known.tensors[index]
    elif kind == "tensor":
        return _decode_tensor(data, known)
    elif kind == "opaque":
        return _opaque(data.get("type"), bool(data.get("module")))
    elif kind == "module":
        return ModuleBuilder().build(data)
    raise TranscriptError(f"a value in the record is malformed (kind {str(kind)[:40]!r})")


def _decode_tensor(data: dict, known: KnownTensors) -> torch.Tensor:
    dtype, shape = DTYPES.get(data.get("dtype")), data.get("shape")
    if dtype is None or not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise TranscriptError("a tensor in the record is malformed")
    count = math.prod(shape)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    known.decoded += count
    if count > MAX_ELEMENTS or known.decoded > DECODE_LIMIT:
        raise TranscriptError("a tensor in the record is too large")
    try:
        raw = zlib.decompressobj().decompress(
            base64.b64decode(str(data.get("data")), validate=True), count * itemsize + 1
        )
    except (ValueError, zlib.error) as error:
        raise TranscriptError("a tensor in the record is malformed") from error
    if len(raw) != count * itemsize:
        raise TranscriptError("a tensor in the record does not hold as many values as its shape says")
    tensor = (
        torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
        if count
        else torch.empty(shape, dtype=dtype)
    )
    if data.get("requires_grad") is True and dtype.is_floating_point:
        tensor.requires_grad_(True)
    return tensor


class ModuleBuilder:
    """Rebuilds a module's structure from ``_encode_module``'s record: PyTorch's own layer classes as themselves,
    any other class as an empty ``nn.Module`` subclass of the same name; parameters are zeros of the recorded shapes."""

    def __init__(self) -> None:
        self.modules: list[nn.Module] = []
        self.parameters: list[nn.Parameter] = []
        self.elements = 0

    def build(self, data: Any, depth: int = 0) -> nn.Module:
        """The module recorded in ``data``."""
        if not isinstance(data, dict) or depth > 14:
            raise TranscriptError("a module in the record is malformed")
        if data.get("k") == "module_ref":
            index = data.get("i")
            if not isinstance(index, int) or not 0 <= index < len(self.modules):
                raise TranscriptError("a module in the record is malformed")
            return self.modules[index]
        if len(self.modules) >= MAX_ITEMS:
            raise TranscriptError("a module in the record is too large")
        module = self._empty(data.get("type"), data.get("builtin") is True)
        self.modules.append(module)
        for name, value in (data.get("attrs") or {}).items():
            if isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
                object.__setattr__(module, name, decode(value, KnownTensors()))
        for name, spec in data.get("params") or []:
            module.register_parameter(_name(name), self._parameter(spec))
        for name, spec in data.get("buffers") or []:
            module.register_buffer(
                _name(name), None if spec is None else torch.zeros(_shape(spec), dtype=_dtype(spec))
            )
        for name, child in data.get("children") or []:
            module.add_module(_name(name), None if child is None else self.build(child, depth + 1))
        return module

    def _empty(self, type_name: Any, builtin: bool) -> nn.Module:
        name = type_name if isinstance(type_name, str) and type_name.isidentifier() else "Module"
        cls = getattr(nn, name, None) if builtin else None
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            cls = type(name[:80], (nn.Module,), {"forward": _not_recorded})
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        return module

    def _parameter(self, spec: Any) -> nn.Parameter | None:
        if spec is None:
            return None
        if isinstance(spec, dict) and "ref" in spec:
            index = spec["ref"]
            if not isinstance(index, int) or not 0 <= index < len(self.parameters):
                raise TranscriptError("a parameter in the record is malformed")
            return self.parameters[index]
        if not isinstance(spec, dict):
            raise TranscriptError("a parameter in the record is malformed")
        dtype, shape = _dtype(spec), _shape(spec)
        self.elements += math.prod(shape)
        if self.elements > MODULE_ELEMENTS:
            raise TranscriptError("a module in the record is too large")
        parameter = nn.Parameter(
            torch.zeros(shape, dtype=dtype),
            requires_grad=spec.get("requires_grad") is not False and dtype.is_floating_point,
        )
        self.parameters.append(parameter)
        return parameter


def _not_recorded(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    raise TranscriptError(f"the judge cannot run {type(self).__name__}: only its recorded answers count")


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name or "." in name or len(name) > 100:
        raise TranscriptError("a name in the record is malformed")
    return name


def _shape(spec: dict) -> list[int]:
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not all(isinstance(s, int) and s >= 0 for s in shape)
        or math.prod(shape) > MODULE_ELEMENTS
    ):
        raise TranscriptError("a shape in the record is malformed")
    return shape


def _dtype(spec: dict) -> torch.dtype:
    dtype = DTYPES.get(spec.get("dtype"))
    if dtype is None:
        raise TranscriptError("a dtype in the record is malformed")
    return dtype
