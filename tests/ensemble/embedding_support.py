"""Helpers of the ensemble tests: the sentence set, the project, requests and comparisons."""

from __future__ import annotations

import concurrent.futures
import os
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

import pbkit
from pbkit.testing import ProjectModules

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = REPO_ROOT / "models" / "ensemble_embedding"
PROJECT_MODULES = (
    "common",
    "network",
    "tokenizer",
    "encoder",
    "pooling",
    "embedding",
    "query",
    "export_onnx",
)

LONG_PARAGRAPH = " ".join(
    f"Sentence {i} of a long paragraph keeps going so that the text is well past the model's limit."
    for i in range(40)
)

#: Varied on purpose: empty, whitespace, one character, non-ASCII scripts and emoji, longer than
#: the 256-token limit (truncated), punctuation, digits, mixed case, markup and repeats.
SENTENCES: tuple[str, ...] = (
    "",
    " ",
    "a",
    "?",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول",
    "Ünïcödé dïäcrïtïcs everywhere: naïve café façade résumé.",
    "Emoji: 🙂🚀🔥 and a flag 🇫🇷",
    "UPPER CASE SHOUTING ABOUT THE WEATHER",
    "numbers 1234567890 and 3.14159 and -42",
    "Tabs\tand\nnewlines\r\nmixed in.",
    "<p>Some <b>HTML</b> markup &amp; entities</p>",
    "def embed(text): return model.encode(text)",
    "supercalifragilisticexpialidocious" * 3,
    "a" * 600,
    LONG_PARAGRAPH,
    LONG_PARAGRAPH[: len(LONG_PARAGRAPH) // 3],
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is eating food.",  # a repeat: its embedding must equal the first one's
    "Mixed 中文 and English in one sentence, plus ελληνικά.",
    "!!!???...,,,;;;:::",
)


def import_project() -> ProjectModules:
    """The project's modules, imported under their own names as Triton does (see ``ProjectModules``)."""
    return ProjectModules(PROJECT, PROJECT_MODULES)


def text_tensor(sentence: str) -> np.ndarray:
    """One request's TEXT: a ``[1, 1]`` BYTES array."""
    return np.array([[sentence.encode("utf-8")]], dtype=object)


def embed_concurrently(
    infer: Callable[[str], np.ndarray], sentences: Sequence[str], clients: int
) -> np.ndarray:
    """Send each sentence as its own request from ``clients`` threads at once; rows in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        rows = list(pool.map(infer, sentences))
    return np.concatenate(rows, axis=0)


def assert_matches_reference(got: np.ndarray, reference: np.ndarray, tolerance: float = 1e-5) -> None:
    assert got.shape == reference.shape
    assert got.dtype == np.float32
    difference = np.abs(got - reference).max(axis=1)
    worst = int(np.argmax(difference))
    assert difference[worst] <= tolerance, (
        f"sentence {worst} ({SENTENCES[worst][:40]!r}) differs by {difference[worst]:.2e}"
    )
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def project_importable(project: ProjectModules) -> AbstractContextManager[None]:
    """Let code that imports project modules lazily (``setup``) find them, as inside Triton."""
    return project.importable()


def context(name: str, **parameters: str) -> pbkit.SetupContext:
    return pbkit.SetupContext(
        model_name=name,
        model_version=1,
        instance_name=f"{name}_0",
        instance_kind="CPU",
        device_id=0,
        model_dir=PROJECT,
        config={},
        parameters=parameters,
    )


def texts(sentences: list[str] | tuple[str, ...]) -> np.ndarray:
    return np.array([[s.encode("utf-8")] for s in sentences], dtype=object)
