"""The ONNX variant of the encoder: exported with pbkit's exporter, run with ONNX Runtime.

The local tritonserver has no ONNX Runtime backend, so the exported graph is run here with
onnxruntime between the real tokenizer and pooling models, and must give
sentence-transformers' embeddings; the repository built with ``--variant onnx`` is checked too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from embedding_support import (
    PROJECT,
    SENTENCES,
    assert_matches_reference,
    context,
    project_importable,
    text_tensor,
    texts,
)

from pbkit.build import build
from pbkit.config.check import check_repository
from pbkit.config.parse import parse_config
from pbkit.testing import ProjectModules

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(project: ProjectModules, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    with project_importable(project):
        report = project.export_onnx.export(output=path)
    assert report.passed, report.summary()
    assert report.exporter == "torchscript"
    return path


def test_exported_encoder_in_the_pipeline_matches_sentence_transformers(
    exported: Path, project: ProjectModules, reference: np.ndarray
) -> None:
    import onnxruntime

    tokenizer = project.tokenizer.Tokenizer()
    tokenizer.setup(context("embedding_tokenizer", checkpoint="", max_length=""))
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    pooling = project.pooling.Pooling()
    rows = []
    for start in range(0, len(SENTENCES), 8):  # batches of different longest lengths
        tokens = tokenizer.predict(TEXT=texts(SENTENCES[start : start + 8]))
        (hidden,) = session.run(["last_hidden_state"], tokens)
        assert hidden.shape[1] == tokens["attention_mask"].sum(axis=1).max()
        rows.append(pooling.predict(last_hidden_state=hidden, attention_mask=tokens["attention_mask"]))
    assert_matches_reference(np.concatenate([r["sentence_embedding"] for r in rows]), reference)


@pytest.fixture(scope="module")
def onnx_repository(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("onnx_variant")
    copy = root / "ensemble_embedding"
    copy.mkdir()
    for file in PROJECT.glob("*.py"):
        shutil.copy(file, copy / file.name)
    (copy / "onnx").mkdir()
    shutil.copy(exported, copy / "onnx" / "model.onnx")
    report = build(copy, root / "repo", variant="onnx")
    assert {m.name: m.kind for m in report.models}["embedding_encoder"] == "onnx"
    return root / "repo"


def test_repository_with_the_onnx_variant(onnx_repository: Path, exported: Path) -> None:
    config = parse_config((onnx_repository / "embedding_encoder" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert (
        onnx_repository / "embedding_encoder" / "1" / "model.onnx"
    ).stat().st_size == exported.stat().st_size
    assert [str(problem) for problem in check_repository(onnx_repository)] == []


def test_onnx_variant_repository_in_local_triton(onnx_repository: Path, reference: np.ndarray) -> None:
    """The built ensemble, with ONNX Runtime standing in for Triton's ONNX backend."""
    import onnxruntime

    from pbkit.testing import LocalTriton

    session = onnxruntime.InferenceSession(
        str(onnx_repository / "embedding_encoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    def onnx_backend(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (hidden,) = session.run(["last_hidden_state"], inputs)
        return {"last_hidden_state": hidden}

    with LocalTriton(onnx_repository, stubs={"embedding_encoder": onnx_backend}) as local:
        got = np.concatenate(
            [local.infer("embedding", {"TEXT": text_tensor(s)})["EMBEDDING"] for s in SENTENCES]
        )
    assert_matches_reference(got, reference)
