"""The embedding models' parts, without a server: declarations, tokenizer, encoder, pooling, client."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from embedding_support import PROJECT, SENTENCES, assert_matches_reference, context, project_importable, texts

import pbkit
from pbkit.build import BuildError, build
from pbkit.config.check import check_repository
from pbkit.config.parse import parse_config
from pbkit.testing import ProjectModules


@pytest.fixture(scope="module")
def tokenizer(project: ProjectModules) -> object:
    model = project.tokenizer.Tokenizer()
    model.setup(context("embedding_tokenizer", checkpoint="", max_length=""))
    return model


@pytest.fixture(scope="module")
def encoder(project: ProjectModules) -> object:
    model = project.encoder.encoder.python_model_class()()
    with project_importable(project):
        model.setup(context("embedding_encoder", checkpoint=""))
    return model


# ----------------------------------------------------------------------------- declarations
def copy_project(tmp_path: Path) -> Path:
    """The project's sources without any exported ONNX file."""
    copy = tmp_path / "ensemble_embedding"
    copy.mkdir()
    for file in PROJECT.glob("*.py"):
        shutil.copy(file, copy / file.name)
    return copy


def test_build_wires_the_ensemble_and_defaults_to_the_python_encoder(tmp_path: Path) -> None:
    report = build(copy_project(tmp_path), tmp_path / "repo")
    assert {m.name: m.kind for m in report.models} == {
        "embedding": "ensemble",
        "embedding_tokenizer": "python",
        "embedding_encoder": "python variant",
        "embedding_pooling": "python",
    }
    config = parse_config((tmp_path / "repo" / "embedding" / "config.pbtxt").read_text())
    assert config.platform == "ensemble"
    assert config.max_batch_size == 64
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("TEXT", 13, [1])]  # TYPE_STRING
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("EMBEDDING", 11, [384])]  # FP32
    steps = [(s.model_name, dict(s.input_map), dict(s.output_map)) for s in config.ensemble_scheduling.step]
    tokens = {name: name for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert steps == [
        ("embedding_tokenizer", {"TEXT": "TEXT"}, tokens),
        ("embedding_encoder", tokens, {"last_hidden_state": "last_hidden_state"}),
        (
            "embedding_pooling",
            {"last_hidden_state": "last_hidden_state", "attention_mask": "attention_mask"},
            {"sentence_embedding": "EMBEDDING"},
        ),
    ]
    encoder = parse_config((tmp_path / "repo" / "embedding_encoder" / "config.pbtxt").read_text())
    assert encoder.backend == "python"
    assert encoder.dynamic_batching.max_queue_delay_microseconds > 0
    assert "checkpoint" in encoder.parameters
    assert not list((tmp_path / "repo").glob("*/1/onnx"))
    assert [str(problem) for problem in check_repository(tmp_path / "repo")] == []


def test_onnx_variant_needs_the_exported_file(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    with pytest.raises(BuildError, match=r"embedding_encoder.*onnx/model\.onnx"):
        build(project, tmp_path / "repo", variant="onnx")


def test_onnx_variant_is_chosen_only_when_asked(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    (project / "onnx").mkdir()
    (project / "onnx" / "model.onnx").write_bytes(b"stand-in for an exported graph")
    report = build(project, tmp_path / "default")
    assert {m.name: m.kind for m in report.models}["embedding_encoder"] == "python variant"
    report = build(project, tmp_path / "onnx", variant="onnx")
    assert {m.name: m.kind for m in report.models}["embedding_encoder"] == "onnx"
    config = parse_config((tmp_path / "onnx" / "embedding_encoder" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx"
    assert (tmp_path / "onnx" / "embedding_encoder" / "1" / "model.onnx").read_bytes().startswith(b"stand-in")


def test_discovery_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys; from pbkit.build.discover import discover; "
        f"names = discover({str(PROJECT)!r}).names(); "
        "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'sentence_transformers') if m in sys.modules]; "
        "print(sorted(names), heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    names = "['embedding', 'embedding_encoder', 'embedding_pooling', 'embedding_tokenizer']"
    assert result.stdout.strip() == f"{names} []", result.stderr


def test_client_script_stays_out_of_discovery() -> None:
    # Discovery imports the files that mention the toolkit's name; the client and the torch network must not be.
    for script in ("query.py", "network.py"):
        assert "pbkit" not in (PROJECT / script).read_text(encoding="utf-8").lower(), script


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_pads_every_sentence_to_the_checkpoint_length(tokenizer: object, checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    out = tokenizer.predict(TEXT=texts(SENTENCES))
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    for array in out.values():
        assert array.shape == (len(SENTENCES), 256)
        assert array.dtype == np.int64
    hf = AutoTokenizer.from_pretrained(str(checkpoint))
    for row, sentence in enumerate(SENTENCES):
        ids = hf(sentence, truncation=True, max_length=256)["input_ids"]
        assert out["input_ids"][row, : len(ids)].tolist() == ids
        assert out["attention_mask"][row].sum() == len(ids)
        assert not out["input_ids"][row, len(ids) :].any()
    lengths = out["attention_mask"].sum(axis=1)
    assert lengths.max() == 256  # the long paragraph is truncated
    assert lengths[SENTENCES.index("")] == 2  # [CLS] [SEP]


def test_tokenizer_max_length_parameter(project: ProjectModules) -> None:
    model = project.tokenizer.Tokenizer()
    model.setup(context("embedding_tokenizer", checkpoint="", max_length="32"))
    out = model.predict(TEXT=texts(["short", "x " * 100]))
    assert out["input_ids"].shape == (2, 32)
    assert out["attention_mask"].sum(axis=1).tolist() == [3, 32]


def test_tokenizer_checkpoint_parameter(project: ProjectModules, checkpoint: Path, tmp_path: Path) -> None:
    model = project.tokenizer.Tokenizer()
    model.setup(context("embedding_tokenizer", checkpoint=str(checkpoint), max_length=""))
    assert model.max_length == 256
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        model.setup(context("embedding_tokenizer", checkpoint=str(tmp_path), max_length=""))


def test_tokenizer_rejects_text_that_is_not_utf8(tokenizer: object) -> None:
    tokenizer.validate(TEXT=texts(["fine", "ça va"]))
    with pytest.raises(pbkit.InvalidArgument, match="UTF-8"):
        tokenizer.validate(TEXT=np.array([[b"\xc3\x28"]], dtype=object))


# ----------------------------------------------------------------------------- encoder and pooling
def test_encoder_trims_to_the_longest_sentence_without_changing_results(
    tokenizer: object, encoder: object
) -> None:
    sentences = ["a", "A man is eating food.", "The weather is lovely today, isn't it?"]
    tokens = tokenizer.predict(TEXT=texts(sentences))
    hidden = encoder.predict(**tokens)["last_hidden_state"]
    longest = int(tokens["attention_mask"].sum(axis=1).max())
    assert hidden.shape == (3, longest, 384)
    assert hidden.dtype == np.float32
    for row in range(3):  # each sentence alone, unpadded
        length = int(tokens["attention_mask"][row].sum())
        alone = encoder.predict(**{name: array[row : row + 1, :length] for name, array in tokens.items()})
        np.testing.assert_allclose(
            hidden[row, :length], alone["last_hidden_state"][0], atol=1e-5, rtol=0, err_msg=sentences[row]
        )


def test_encoder_rejects_a_checkpoint_of_another_width(project: ProjectModules, checkpoint: Path) -> None:
    with pytest.raises(
        ValueError, match="hidden size 384, but the models are declared with EMBEDDING_DIM = 768"
    ):
        project.network.load_encoder(checkpoint, hidden_size=768)


def test_pooling_is_masked_mean_then_unit_length(project: ProjectModules) -> None:
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 384)).astype(np.float32)
    mask = np.zeros((3, 8), dtype=np.int64)
    mask[0, :5] = 1
    mask[1, :2] = 1
    mask[2, :1] = 1
    out = project.pooling.Pooling().predict(last_hidden_state=hidden, attention_mask=mask)[
        "sentence_embedding"
    ]
    assert out.shape == (3, 384) and out.dtype == np.float32
    for row, count in enumerate((5, 2, 1)):
        mean = hidden[row, :count].mean(axis=0)
        np.testing.assert_allclose(out[row], mean / np.linalg.norm(mean), atol=1e-6)
    zero = project.pooling.mean_pool_normalize(hidden[:1], np.zeros((1, 8), dtype=np.int64))
    assert np.isfinite(zero).all() and not zero.any()


def test_the_three_steps_in_process_match_sentence_transformers(
    tokenizer: object, encoder: object, project: ProjectModules, reference: np.ndarray
) -> None:
    tokens = tokenizer.predict(TEXT=texts(SENTENCES))
    hidden = encoder.predict(**tokens)["last_hidden_state"]
    pooled = project.pooling.Pooling().predict(
        last_hidden_state=hidden, attention_mask=tokens["attention_mask"]
    )
    assert_matches_reference(pooled["sentence_embedding"], reference)


# ----------------------------------------------------------------------------- client script
def test_cosine_similarity(project: ProjectModules) -> None:
    cosine = project.query.cosine_similarity
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine(np.array([1.0, 1.0]), np.array([-1.0, -1.0])) == pytest.approx(-1.0)


def test_query_reports_an_unreachable_server(
    project: ProjectModules, capsys: pytest.CaptureFixture[str]
) -> None:
    from embedding_support import free_port

    code = project.query.main([f"http://127.0.0.1:{free_port()}", "one", "two"])
    assert code == 1
    assert capsys.readouterr().err.startswith("query failed:")
