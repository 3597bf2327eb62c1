"""The ONNX variant of the encoder: exported with pbkit's exporter, run with ONNX Runtime.

The local tritonserver has no ONNX Runtime backend, so the exported graph is run here with
onnxruntime between the real tokenizer and pooling models, and must give
sentence-transformers' embeddings; the repository built with ``--variant onnx`` is checked too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from embedding_support import PROJECT, SENTENCES, assert_matches_reference, context, project_importable, texts

from pbkit.build import build
from pbkit.config.check import check_repository
from pbkit.config.parse import parse_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(project: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    with project_importable(project):
        report = project.export_onnx.export(output=path)
    assert report.passed, report.summary()
    assert report.exporter == "torchscript"
    return path


def test_exported_encoder_in_the_pipeline_matches_sentence_transformers(
    exported: Path, project: SimpleNamespace, reference: np.ndarray
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


def test_repository_with_the_onnx_variant(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ensemble_embedding"
    copy.mkdir()
    for file in PROJECT.glob("*.py"):
        shutil.copy(file, copy / file.name)
    (copy / "onnx").mkdir()
    shutil.copy(exported, copy / "onnx" / "model.onnx")
    report = build(copy, tmp_path / "repo", variant="onnx")
    assert {m.name: m.kind for m in report.models}["embedding_encoder"] == "onnx"
    config = parse_config((tmp_path / "repo" / "embedding_encoder" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert (
        tmp_path / "repo" / "embedding_encoder" / "1" / "model.onnx"
    ).stat().st_size == exported.stat().st_size
    assert [str(problem) for problem in check_repository(tmp_path / "repo")] == []
