"""The CLIP tokenizer files built offline from open-clip-torch's BPE vocabulary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sd_modules import clip_vocab
from transformers import AutoTokenizer, CLIPTokenizer

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clip_vocab.write_clip_tokenizer(tmp_path_factory.mktemp("clip_tokenizer"))


def test_bpe_file_is_found_without_importing_open_clip() -> None:
    import sys

    path = clip_vocab.find_bpe_file()
    assert path.name == "bpe_simple_vocab_16e6.txt.gz"
    assert "open_clip" not in sys.modules


def test_vocabulary_layout_matches_openai_clip() -> None:
    vocab = clip_vocab.build_vocab(clip_vocab.read_merges())
    assert len(vocab) == 49408
    assert vocab["!"] == 0
    assert vocab["!</w>"] == 256
    assert vocab["<|startoftext|>"] == 49406
    assert vocab["<|endoftext|>"] == 49407
    assert vocab["a</w>"] == 320
    assert vocab["cat</w>"] == 2368


def test_written_files(tokenizer_dir: Path) -> None:
    merges = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2"
    assert len(merges) == 1 + clip_vocab.MERGE_COUNT
    assert merges[1] == "i n"
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["model_max_length"] == 77


def test_clip_tokenizer_ids(tokenizer_dir: Path) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    assert tokenizer("a photo of a cat").input_ids == CAT_IDS
    assert tokenizer("A  Photo of a CAT").input_ids == CAT_IDS  # lower-cased, whitespace collapsed
    assert tokenizer.model_max_length == 77
    assert tokenizer.pad_token_id == 49407
    padded = tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert padded == CAT_IDS + [49407] * 70
    assert tokenizer.decode(CAT_IDS, skip_special_tokens=True) == "a photo of a cat"


def test_auto_tokenizer_loads_the_directory(tokenizer_dir: Path) -> None:
    assert AutoTokenizer.from_pretrained(tokenizer_dir)("a photo of a cat").input_ids == CAT_IDS


def test_vocab_and_merges_alone_are_enough(tokenizer_dir: Path, tmp_path: Path) -> None:
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer_dir / name, tmp_path / name)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == CAT_IDS
    full = CLIPTokenizer.from_pretrained(tokenizer_dir)
    text = "An astronaut riding a horse, 4k, héllo wörld!!"
    assert tokenizer(text).input_ids == full(text).input_ids


def test_cli_writes_a_loadable_directory(tmp_path: Path) -> None:
    assert clip_vocab.main([str(tmp_path / "tok")]) == 0
    assert CLIPTokenizer.from_pretrained(tmp_path / "tok")("a photo of a cat").input_ids == CAT_IDS
    assert clip_vocab.main([]) == 2
