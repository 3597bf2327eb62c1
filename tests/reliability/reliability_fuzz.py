"""Property-based request fuzzing: hypothesis strategies for good and malformed requests, and the
answer each one must get.

A :class:`ModelContract` describes a served model as a client sees it (inputs, outputs, batch limit),
how to draw well-typed input values for it, and an *oracle*: for a request that is structurally
valid, the oracle computes the expected outputs independently of the model's code, or raises
:class:`Rejected` naming the input or parameter the model must refuse.

:func:`fuzz_cases` draws a valid request, then applies zero to two structural mutations (wrong data
type, rank or fixed dim; a missing or an extra input; batch sizes that are zero, too large or that
disagree; an unknown requested output) and random request parameters. Values include empty and
huge tensors, NaN, infinities, subnormals, extreme integers and bytes that are not UTF-8.

:func:`check_answer` holds every answer to the rule of the reliability tests: either the correct
result, or ``INVALID_ARG`` whose message names one of the request's problems.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from pbkit.spec.dtypes import DataType
from pbkit.testing.client import InferError

NUMPY_TYPES: dict[str, Any] = {t.value: t.numpy for t in DataType}
DATA_TYPES = tuple(NUMPY_TYPES)
#: Request parameter names the clients refuse to send (tritonclient's reserved names and prefix).
RESERVED_PARAMETERS = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "headers", "binary_data_output"}
)
MUTATIONS = (
    "dtype",
    "rank",
    "shape",
    "missing",
    "extra",
    "batch_zero",
    "batch_over",
    "batch_mismatch",
    "output",
)
FLOAT_SPECIALS = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    1e-45,
    1e-310,
    65504.0,
    3.0e38,
    -3.0e38,
    math.nan,
    math.inf,
    -math.inf,
)
#: Byte strings that are easy to get wrong: empty, NUL, invalid UTF-8 (lone continuation byte, truncated
#: sequence, an encoded surrogate, a code point past U+10FFFF, overlong NUL), escapes, quotes.
TRICKY_BYTES = (
    b"",
    b"\x00",
    b"\xff",
    b"\x80",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\x80",
    "é✓🙂 中文".encode(),
    b"\x1b[31mred\x1b[0m",
    b"'; DROP TABLE models; --",
    b'{"json": "lookalike"}',
    b"\r\n\t ",
)


@dataclass(frozen=True)
class AnyValues:
    """An expected output known only by data type and rank (a random seed, or a lenient contract)."""

    dtype: np.dtype[Any]
    rank: int
    rows: int | None = None


class Rejected(Exception):
    """The oracle's verdict that the model must answer INVALID_ARG naming one of ``names``."""

    def __init__(self, *names: str) -> None:
        super().__init__(", ".join(names))
        self.names = names


@dataclass(frozen=True)
class TensorContract:
    """One input as a client sees it."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class Problem:
    """A structural fault put into a request; the error message must contain one of ``names``."""

    kind: str
    names: tuple[str, ...]


InputsStrategy = Callable[[int], st.SearchStrategy[dict[str, np.ndarray]]]
Oracle = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], "dict[str, Any] | Expectation"]


@dataclass
class ModelContract:
    """A model under fuzzing: its interface, how to draw inputs, and what it must answer."""

    name: str
    inputs: tuple[TensorContract, ...]
    outputs: tuple[str, ...]
    max_batch_size: int
    draw_inputs: InputsStrategy
    """Given a batch size, well-typed inputs (optional ones may be left out; values may be bad)."""
    oracle: Oracle
    """Expected outputs of a structurally valid request, or raises :class:`Rejected`."""
    rows: st.SearchStrategy[int]
    parameters: st.SearchStrategy[dict[str, Any]] = field(default_factory=lambda: parameter_dicts())
    rtol: float = 1e-6
    atol: float = 1e-6
    good_request: Callable[[], dict[str, np.ndarray]] | None = None
    """A request that must always succeed (sent after fuzzing)."""

    def tensor(self, name: str) -> TensorContract:
        return next(t for t in self.inputs if t.name == name)


@dataclass
class FuzzCase:
    """One drawn request and what was done to it."""

    model: str
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any] | None
    outputs: list[str] | None
    problems: list[Problem]
    protocol: str
    mutations: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A compact summary for failure reports (shapes and dtypes, not the values)."""
        tensors = ", ".join(f"{n}:{a.dtype}{list(a.shape)}" for n, a in self.inputs.items())
        return (
            f"{self.model} over {self.protocol}: inputs {{{tensors}}} parameters={self.parameters!r} "
            f"outputs={self.outputs!r} mutations={self.mutations} problems={self.problems}"
        )


# --------------------------------------------------------------------------- value strategies
def parameter_dicts(names: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Request parameters: bool, int64, float and str values under arbitrary (non-reserved) names."""
    keys = st.from_regex(r"\A[a-z][a-z0-9_]{0,15}\Z").filter(
        lambda key: key not in RESERVED_PARAMETERS and not key.startswith("triton_")
    )
    if names is not None:
        keys = st.one_of(names, keys)
    values = st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=24),
    )
    return st.dictionaries(keys, values, max_size=3)


@st.composite
def numeric_arrays(draw: st.DrawFn, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``dtype``: random, constant, or random with specials sprinkled in."""
    numpy_type = np.dtype(NUMPY_TYPES[dtype])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    fill = draw(st.sampled_from(("random", "constant", "sprinkled")))
    if numpy_type.kind == "b":
        if fill == "constant":
            return np.full(shape, draw(st.booleans()))
        return rng.random(shape) < 0.5
    if numpy_type.kind == "f":
        if fill == "constant":
            value = draw(st.one_of(st.sampled_from(FLOAT_SPECIALS), st.floats(width=32)))
            with np.errstate(over="ignore"):
                return np.full(shape, value, dtype=numpy_type)
        array = (rng.standard_normal(shape) * draw(st.sampled_from((1.0, 1e-3, 1e3)))).astype(numpy_type)
        if fill == "sprinkled" and array.size:
            positions = rng.integers(0, array.size, size=max(1, array.size // 50))
            with np.errstate(over="ignore"):
                array.reshape(-1)[positions] = rng.choice(
                    np.array(FLOAT_SPECIALS, dtype=np.float64), size=len(positions)
                )
        return array
    info = np.iinfo(numpy_type)
    if fill == "constant":
        value = draw(st.sampled_from((int(info.min), int(info.max), 0, 1, int(info.max) // 2)))
        return np.full(shape, value, dtype=numpy_type)
    return rng.integers(int(info.min), int(info.max), size=shape, dtype=numpy_type, endpoint=True)


def bytes_elements() -> st.SearchStrategy[bytes]:
    """Single BYTES elements: binary, UTF-8 text (any code point), and tricky strings."""
    return st.one_of(
        st.binary(max_size=48),
        st.text(max_size=48).map(lambda text: text.encode("utf-8")),
        st.sampled_from(TRICKY_BYTES),
    )


def text_elements() -> st.SearchStrategy[bytes]:
    """UTF-8 text only: any code point, including NUL, controls, combining marks and emoji."""
    return st.one_of(
        st.text(max_size=64).map(lambda text: text.encode("utf-8")),
        st.sampled_from([item for item in TRICKY_BYTES if _is_utf8(item)]),
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def bytes_arrays(
    draw: st.DrawFn, shape: tuple[int, ...], elements: st.SearchStrategy[bytes] | None = None
) -> np.ndarray:
    """An object array of bytes of ``shape``: up to 64 drawn elements, repeated to fill it; one array in
    four gets one huge element (5 KB to 1 MB of text)."""
    elements = elements if elements is not None else bytes_elements()
    count = int(np.prod(shape, dtype=np.int64))
    drawn = draw(st.lists(elements, min_size=min(count, 64), max_size=min(count, 64)))
    array = np.empty(count, dtype=object)
    for index in range(count):
        array[index] = drawn[index % len(drawn)] if drawn else b""
    if count and draw(st.integers(0, 3)) == 0:
        array[draw(st.integers(0, count - 1))] = b"word " * draw(st.integers(1_000, 200_000))
    return array.reshape(shape)


def arrays_of(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Values of any Triton data type."""
    return bytes_arrays(shape) if dtype == "BYTES" else numeric_arrays(dtype, shape)


def variable_lengths(
    small: int = 12, huge: Sequence[int] = (1_000, 100_000, 1_000_000)
) -> st.SearchStrategy[int]:
    """Sizes for a -1 dim: mostly small (0 included), sometimes huge."""
    return st.one_of(st.integers(0, small), st.integers(0, small), st.sampled_from(tuple(huge)))


@st.composite
def independent_inputs(
    draw: st.DrawFn,
    rows: int,
    tensors: Sequence[TensorContract],
    lengths: st.SearchStrategy[int],
    values: Callable[[TensorContract, tuple[int, ...]], st.SearchStrategy[np.ndarray]] | None = None,
    batched: bool = True,
    max_elements: int = 8_000_000,
) -> dict[str, np.ndarray]:
    """Inputs drawn one by one: optional ones half the time, each -1 dim from ``lengths``; the largest
    variable dims are cut to 4 while a tensor would hold more than ``max_elements`` values."""
    inputs: dict[str, np.ndarray] = {}
    for tensor in tensors:
        if tensor.optional and not draw(st.booleans()):
            continue
        dims = [draw(lengths) if d == -1 else d for d in tensor.dims]
        variable = sorted((i for i, d in enumerate(tensor.dims) if d == -1), key=lambda i: -dims[i])
        for index in variable:
            if math.prod(dims) * max(rows, 1) <= max_elements:
                break
            dims[index] = min(dims[index], 4)
        shape = (rows, *dims) if batched else tuple(dims)
        strategy = values(tensor, shape) if values is not None else arrays_of(tensor.dtype, shape)
        inputs[tensor.name] = draw(strategy)
    return inputs


# --------------------------------------------------------------------------- mutations
def _converted(array: np.ndarray, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Values of another data type with ``array``'s shape."""
    if dtype == "BYTES":
        converted = np.empty(array.shape, dtype=object)
        converted.reshape(-1)[:] = [str(v).encode() for v in array.reshape(-1)]
        return converted
    numpy_type = np.dtype(NUMPY_TYPES[dtype])
    if numpy_type.kind == "b":
        return rng.random(array.shape) < 0.5
    if numpy_type.kind == "f":
        return rng.standard_normal(array.shape).astype(numpy_type)
    return rng.integers(0, 100, size=array.shape).astype(numpy_type)


def _with_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` with its first axis resized to ``rows`` (repeating its rows)."""
    if array.shape[0] == 0:
        return (
            np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
            if array.dtype != object
            else np.full((rows, *array.shape[1:]), b"", dtype=object)
        )
    return (
        np.resize(array, (rows, *array.shape[1:]))
        if array.dtype != object
        else np.array([array[i % array.shape[0]] for i in range(rows)], dtype=object).reshape(
            (rows, *array.shape[1:])
        )
    )


@st.composite
def fuzz_cases(
    draw: st.DrawFn,
    contract: ModelContract,
    faults: Sequence[int] = (0, 1, 2),
    protocols: Sequence[str] = ("grpc", "http"),
) -> FuzzCase:
    """A request for ``contract``'s model with as many structural faults as one of ``faults`` says
    (see the module docstring); a fault that does not apply to the request is left out."""
    count = draw(st.sampled_from(tuple(faults)))
    batched = contract.max_batch_size > 0
    # Without a batch axis (max_batch_size 0) there is no batch size to get wrong.
    applicable = MUTATIONS if batched else tuple(m for m in MUTATIONS if not m.startswith("batch"))
    mutations: list[str] = draw(
        st.lists(st.sampled_from(applicable), min_size=count, max_size=count, unique=True)
    )
    problems: list[Problem] = []
    all_names = tuple(t.name for t in contract.inputs)
    rows = draw(contract.rows)
    if "batch_zero" in mutations:
        rows = 0
        problems.append(Problem("batch_zero", ("batch", *all_names)))
    elif "batch_over" in mutations:
        rows = contract.max_batch_size + draw(st.integers(1, 3))
        problems.append(Problem("batch_over", ("batch",)))
    inputs = dict(draw(contract.draw_inputs(rows)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    present = sorted(inputs)

    if "dtype" in mutations and present:
        name = draw(st.sampled_from(present))
        new = draw(st.sampled_from([t for t in DATA_TYPES if t != contract.tensor(name).dtype]))
        inputs[name] = _converted(inputs[name], new, rng)
        problems.append(Problem("dtype", (name,)))
    if "rank" in mutations and present:
        name = draw(st.sampled_from(present))
        array = inputs[name]
        if array.ndim >= 2 and draw(st.booleans()):
            inputs[name] = arrays_or_zeros(array, array.shape[:-1]) if array.shape[-1] == 0 else array[..., 0]
        else:
            inputs[name] = np.repeat(array[..., np.newaxis], draw(st.integers(1, 3)), axis=-1)
        problems.append(Problem("rank", (name,)))
    if "shape" in mutations:
        fixed = [n for n in present if any(d != -1 for d in contract.tensor(n).dims) and inputs[n].ndim >= 2]
        if fixed:
            name = draw(st.sampled_from(fixed))
            tensor = contract.tensor(name)
            axis = batched + draw(st.sampled_from([i for i, d in enumerate(tensor.dims) if d != -1]))
            if inputs[name].ndim > axis:
                declared = tensor.dims[axis - batched]
                size = draw(st.integers(0, declared + 3).filter(lambda s: s != declared))
                shape = list(inputs[name].shape)
                shape[axis] = size
                inputs[name] = arrays_or_zeros(inputs[name], tuple(shape))
                problems.append(Problem("shape", (name,)))
    if "missing" in mutations:
        required = [t.name for t in contract.inputs if not t.optional and t.name in inputs]
        if required:
            name = draw(st.sampled_from(required))
            del inputs[name]
            problems.append(Problem("missing", (name,)))
    if "extra" in mutations:
        name = draw(
            st.one_of(
                st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,12}\Z"),
                st.sampled_from(("ünïcode", "dot.name", "a-b", "x:y")),
            ).filter(lambda n: n not in all_names)
        )
        dtype = draw(st.sampled_from(DATA_TYPES))
        inputs[name] = draw(arrays_of(dtype, (max(rows, 1), draw(st.integers(1, 4)))))
        problems.append(Problem("extra", (name,)))
    if "batch_mismatch" in mutations and len(inputs) >= 2:
        name = draw(st.sampled_from(sorted(inputs)))
        if inputs[name].ndim >= 1:
            inputs[name] = _with_rows(inputs[name], inputs[name].shape[0] + draw(st.integers(1, 3)))
            problems.append(Problem("batch_mismatch", ("batch", *inputs)))
    requested: list[str] | None = None
    if "output" in mutations:
        unknown = draw(
            st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,12}\Z").filter(lambda n: n not in contract.outputs)
        )
        requested = [*draw(st.lists(st.sampled_from(contract.outputs), unique=True)), unknown]
        problems.append(Problem("output", (unknown,)))
    elif draw(st.booleans()):
        requested = draw(st.lists(st.sampled_from(contract.outputs), min_size=1, unique=True))
    parameters = draw(st.one_of(st.none(), contract.parameters))
    return FuzzCase(
        model=contract.name,
        inputs=inputs,
        parameters=parameters or None,
        outputs=requested,
        problems=problems,
        protocol=draw(st.sampled_from(tuple(protocols))),
        mutations=mutations,
    )


def arrays_or_zeros(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``array``'s dtype with ``shape``, reusing its values where they fit."""
    if array.dtype == object:
        return np.full(shape, b"x", dtype=object)
    return np.resize(array, shape) if array.size else np.zeros(shape, dtype=array.dtype)


# --------------------------------------------------------------------------- verdicts
@dataclass
class Expectation:
    """What a request must get. ``outputs`` only: a success with these outputs. ``names`` only: INVALID_ARG
    whose message contains one of them. Both (a lenient contract): either of the two."""

    outputs: dict[str, Any] | None = None
    names: tuple[str, ...] = ()
    server_hangs: bool = False
    """tritonserver 2.51 never answers this request (batch size 0, no elements): a client sees its timeout."""

    @property
    def valid(self) -> bool:
        return self.outputs is not None and not self.names


def expectation(contract: ModelContract, case: FuzzCase) -> Expectation:
    """The answer ``case`` must get, from its structural problems or else the oracle."""
    if case.problems:
        return Expectation(
            names=tuple(name for problem in case.problems for name in problem.names),
            server_hangs=_never_answered(contract, case),
        )
    try:
        result = contract.oracle(case.inputs, case.parameters or {})
    except Rejected as rejected:
        return Expectation(names=rejected.names)
    if isinstance(result, Expectation):
        outputs, names = result.outputs or {}, result.names
    else:
        outputs, names = result, ()
    if case.outputs is not None:
        outputs = {name: value for name, value in outputs.items() if name in case.outputs}
    return Expectation(outputs=outputs, names=names)


def _never_answered(contract: ModelContract, case: FuzzCase) -> bool:
    """Whether tritonserver 2.51 accepts ``case`` and then never answers it.

    A request to a batching model whose batch size is 0 passes Triton's checks when no input holds
    an element (each input's byte size is checked per batch row), and is then never executed nor
    answered (seen with plain Python-backend models too, with and without dynamic batching).
    """
    return (
        [problem.kind for problem in case.problems] == ["batch_zero"]
        and all(not math.prod(array.shape[1:]) for array in case.inputs.values())
        and all(t.name in case.inputs for t in contract.inputs if not t.optional)
    )


Answer = dict[str, np.ndarray] | InferError


def ask(client: Any, case: FuzzCase, timeout: float = 120.0) -> Answer:
    """Send ``case`` and return the outputs or the error (never raises InferError)."""
    try:
        return client.infer(
            case.model, case.inputs, outputs=case.outputs, parameters=case.parameters, timeout=timeout
        )
    except InferError as error:
        return error


def check_answer(contract: ModelContract, case: FuzzCase, expected: Expectation, answer: Answer) -> str:
    """Assert that ``answer`` is right for ``case``; returns the outcome's label for the statistics."""
    if expected.outputs is not None and (not expected.names or not isinstance(answer, InferError)):
        assert not isinstance(answer, InferError), f"a valid request failed: {answer}\n{case.describe()}"
        assert set(answer) == set(expected.outputs), (
            f"outputs {sorted(answer)} instead of {sorted(expected.outputs)}\n{case.describe()}"
        )
        for name, want in expected.outputs.items():
            _check_output(contract, case, name, want, answer[name])
        return "ok"
    assert isinstance(answer, InferError), (
        f"a bad request succeeded (expected an error naming {expected.names})\n{case.describe()}"
    )
    assert answer.code == "INVALID_ARG", f"expected INVALID_ARG, got {answer}\n{case.describe()}"
    assert any(name in answer.message for name in expected.names), (
        f"the message {answer.message!r} names none of {expected.names}\n{case.describe()}"
    )
    return "invalid_arg"


def _check_output(contract: ModelContract, case: FuzzCase, name: str, want: Any, got: np.ndarray) -> None:
    where = f"output {name}\n{case.describe()}"
    if isinstance(want, AnyValues):
        assert got.dtype == want.dtype and got.ndim == want.rank, f"{got.dtype}{list(got.shape)} {where}"
        assert want.rows is None or got.shape[0] == want.rows, f"{list(got.shape)} {where}"
        return
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}: {where}"
    if want.dtype == object:
        assert got.tolist() == want.tolist(), f"differs: {where}"
        return
    assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}: {where}"
    if want.dtype.kind in "biu" and contract.atol == 0 and contract.rtol == 0:
        np.testing.assert_array_equal(got, want, err_msg=where)
    else:
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64), rtol=contract.rtol, atol=contract.atol,
            equal_nan=True, err_msg=where,
        )  # fmt: skip


@dataclass
class FuzzStatistics:
    """Counts of what was fuzzed: requests per model and target, what was expected, what came back."""

    cases: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests per ``target/model``."""
    expected: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests per expectation: ``valid`` (a result), ``malformed`` (structural faults),
    ``refused_by_model`` (well-formed, bad values), ``lenient`` (either)."""
    mutations: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    """Answers per ``target/model/outcome`` (``ok`` or ``invalid_arg``)."""
    corpus_digests: dict[str, str] = field(default_factory=dict)
    """SHA-256 of the requests each ``target/model`` was sent: equal across targets for one corpus."""

    def record(self, target: str, case: FuzzCase, expected: Expectation, outcome: str) -> None:
        self.cases[f"{target}/{case.model}"] += 1
        if case.problems:
            kind = "malformed"
        elif expected.outputs is None:
            kind = "refused_by_model"
        else:
            kind = "lenient" if expected.names else "valid"
        self.expected[kind] += 1
        for problem in case.problems:
            self.mutations[problem.kind] += 1
        self.outcomes[f"{target}/{case.model}/{outcome}"] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            item.name: dict(sorted(getattr(self, item.name).items())) for item in dataclasses.fields(self)
        }
