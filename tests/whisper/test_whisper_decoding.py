"""Greedy decoding through numpy callables equals ``WhisperForConditionalGeneration.generate``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import WhisperTokenizerFast
from whisper_modules import decoding, features, networks

GenerationSettings = decoding.GenerationSettings
PromptError = decoding.PromptError


def generate_ids(model: Any, input_features: np.ndarray, eos: int, **kwargs: Any) -> list[list[int]]:
    """Greedy ``generate`` output per row without padding / end-of-text."""
    with torch.no_grad():
        out = model.generate(torch.from_numpy(input_features), **kwargs)
    return [[token for token in row if token != eos] for row in out.tolist()]


class RecordingCallables:
    """Wraps ``(encode, decode_step)`` and records what each decoding call received."""

    def __init__(self, encode: Callable[..., Any], decode_step: Callable[..., Any]) -> None:
        self._encode, self._decode_step = encode, decode_step
        self.encode_calls = 0
        self.steps: list[dict[str, tuple[int, ...]]] = []

    def encode(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self.encode_calls += 1
        return self._encode(**inputs)

    def decode_step(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        assert inputs["input_ids"].dtype == np.int64
        self.steps.append({name: tuple(value.shape) for name, value in inputs.items()})
        return self._decode_step(**inputs)


@pytest.fixture(scope="session")
def english_settings(english_checkpoint: Path) -> Any:
    return GenerationSettings.from_pretrained(english_checkpoint)


@pytest.fixture(scope="session")
def multilingual_settings(multilingual_checkpoint: Path) -> Any:
    return GenerationSettings.from_pretrained(multilingual_checkpoint)


@pytest.fixture(scope="session")
def english_features(clips: list[np.ndarray]) -> np.ndarray:
    return features.batch_log_mel(clips, 80)


@pytest.fixture(scope="session")
def multilingual_features(clips: list[np.ndarray]) -> np.ndarray:
    return features.batch_log_mel(clips, 128)


def test_english_batch_equals_generate(
    english_model: Any, english_settings: Any, english_features: np.ndarray
) -> None:
    recorder = RecordingCallables(*networks.torch_callables(english_model))
    ours = decoding.greedy_decode(recorder.encode, recorder.decode_step, english_features, english_settings)
    reference = generate_ids(english_model, english_features, english_settings.eos_token_id)
    assert ours == reference
    lengths = [len(row) for row in ours]
    assert (
        len(set(lengths)) >= 3 and min(lengths) < english_settings.max_length
    )  # rows stop at different steps
    assert recorder.encode_calls == 1
    # The first call takes the whole prompt with an empty cache; later calls one token per running row.
    first = recorder.steps[0]
    assert first["input_ids"] == (len(english_features), 2)
    assert first["past_key_values"][0] == len(english_features) and first["past_key_values"][4] == 0
    batch_sizes = [step["input_ids"][0] for step in recorder.steps]
    assert batch_sizes == sorted(batch_sizes, reverse=True) and batch_sizes[-1] < batch_sizes[0]
    for step in recorder.steps:
        rows = step["input_ids"][0]
        assert step["past_key_values"][0] == step["cross_key_values"][0] == rows
    # One call per generated token of the longest-running row (its end-of-text included).
    limit = english_settings.max_length
    assert len(recorder.steps) == max(n + (n < limit) for n in lengths)


def test_max_new_tokens_equals_generate(
    english_model: Any, english_settings: Any, english_features: np.ndarray
) -> None:
    encode, decode_step = networks.torch_callables(english_model)
    ours = decoding.greedy_decode(encode, decode_step, english_features, english_settings, max_new_tokens=5)
    reference = generate_ids(english_model, english_features, english_settings.eos_token_id, max_new_tokens=5)
    assert ours == reference
    assert max(len(row) for row in ours) == 5


def test_multilingual_detected_language_equals_generate(
    multilingual_model: Any, multilingual_settings: Any, multilingual_features: np.ndarray
) -> None:
    recorder = RecordingCallables(*networks.torch_callables(multilingual_model))
    prompts = [decoding.row_prompt(multilingual_settings)] * len(multilingual_features)
    ours = decoding.greedy_decode(
        recorder.encode, recorder.decode_step, multilingual_features, multilingual_settings, prompts
    )
    reference = generate_ids(
        multilingual_model, multilingual_features, multilingual_settings.eos_token_id, task="transcribe"
    )
    assert ours == reference
    assert len({len(row) for row in ours}) >= 3
    # Detection: the start token alone, then language, task and no-timestamps on top of its cache.
    assert recorder.steps[0]["input_ids"] == (len(multilingual_features), 1)
    assert recorder.steps[1]["input_ids"] == (len(multilingual_features), 3)
    assert recorder.steps[1]["past_key_values"][4] == 1


def test_multilingual_given_languages_and_task_equal_generate(
    multilingual_model: Any, multilingual_settings: Any, multilingual_features: np.ndarray
) -> None:
    languages = ["de", "french", "<|ja|>", "en", "es", "German", "ru", "ko", "zh"]
    prompts = [decoding.row_prompt(multilingual_settings, lang, "translate") for lang in languages]
    encode, decode_step = networks.torch_callables(multilingual_model)
    ours = decoding.greedy_decode(encode, decode_step, multilingual_features, multilingual_settings, prompts)
    codes = ["de", "fr", "ja", "en", "es", "de", "ru", "ko", "zh"]
    reference = generate_ids(
        multilingual_model,
        multilingual_features,
        multilingual_settings.eos_token_id,
        language=codes,
        task="translate",
    )
    assert ours == reference


def test_prompts(english_settings: Any, multilingual_settings: Any) -> None:
    sot, nt = 50257, 50362
    english = decoding.row_prompt(english_settings)
    assert english_settings.prompt(english.language_id, english.task_id) == [sot, nt]
    for language in (None, "en", "English", "<|en|>", ""):
        assert decoding.row_prompt(english_settings, language, "transcribe") == decoding.RowPrompt(None, None)
    german = multilingual_settings.language_id("de")
    assert german == multilingual_settings.lang_to_id["<|de|>"]
    assert (
        multilingual_settings.language_id("GERMAN") == multilingual_settings.language_id("<|de|>") == german
    )
    row = decoding.row_prompt(multilingual_settings, "de", "translate")
    translate = multilingual_settings.task_to_id["translate"]
    assert multilingual_settings.prompt(row.language_id, row.task_id) == [sot, german, translate, nt]
    transcribe = multilingual_settings.task_to_id["transcribe"]
    assert multilingual_settings.prompt(german, None) == [sot, german, transcribe, nt]


@pytest.mark.parametrize(
    ("multilingual", "language", "task", "message"),
    [
        (False, "de", None, "English-only; LANGUAGE 'de' is not supported"),
        (False, None, "translate", "English-only; TASK 'translate' is not supported"),
        (True, "klingon", None, "LANGUAGE 'klingon' is not a Whisper language"),
        (True, None, "summarize", "TASK 'summarize' is not supported; use 'transcribe' or 'translate'"),
    ],
)
def test_bad_language_or_task_is_refused(
    english_settings: Any,
    multilingual_settings: Any,
    multilingual: bool,
    language: Any,
    task: Any,
    message: str,
) -> None:
    settings = multilingual_settings if multilingual else english_settings
    with pytest.raises(PromptError) as info:
        decoding.row_prompt(settings, language, task)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_settings_follow_the_generation_config(english_settings: Any, multilingual_settings: Any) -> None:
    assert english_settings.decoder_start_token_id == 50257
    assert english_settings.eos_token_id == 50256
    assert english_settings.begin_suppress_tokens == (220, 50256)
    assert 1 in english_settings.suppress_tokens
    assert english_settings.max_length == 40
    assert not english_settings.is_multilingual and multilingual_settings.is_multilingual
    assert multilingual_settings.task_to_id == {"translate": 50357, "transcribe": 50358}
    assert english_settings.max_new_tokens(2) == 40
    assert english_settings.max_new_tokens(2, requested=1000) == 446
    assert english_settings.max_new_tokens(4) == 40
    assert english_settings.max_new_tokens(447, requested=5) == 1


def test_zero_new_tokens_and_empty_batch(
    english_model: Any, english_settings: Any, english_features: np.ndarray
) -> None:
    encode, decode_step = networks.torch_callables(english_model)
    result = decoding.greedy_decode(
        encode, decode_step, english_features[:2], english_settings, max_new_tokens=0
    )
    assert result == [[], []]
    assert decoding.greedy_decode(encode, decode_step, english_features[:0], english_settings) == []


def test_prompt_count_must_match_the_batch(english_settings: Any, english_features: np.ndarray) -> None:
    def never(**_: np.ndarray) -> dict[str, np.ndarray]:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="1 prompts for a batch of 2"):
        decoding.greedy_decode(never, never, english_features[:2], english_settings, [decoding.RowPrompt()])


# ----------------------------------------------------------------------------------------------- text


def test_tokenizer_text_equals_transformers(english_checkpoint: Path) -> None:
    ours = decoding.load_tokenizer(english_checkpoint)
    reference = WhisperTokenizerFast.from_pretrained(english_checkpoint)
    ids = reference(" Hello, world! Ça va? 日本語 €5.", add_special_tokens=False).input_ids
    for sequence in (ids, [50257, *ids, 50256], [352, 11, 362]):
        assert decoding.decode_text(ours, sequence) == reference.decode(sequence, skip_special_tokens=True)


def test_incremental_text_holds_back_split_characters(english_checkpoint: Path) -> None:
    tokenizer = decoding.load_tokenizer(english_checkpoint)
    text = " naïve 日本語 — €5 🎉!"
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # some tokens are partial characters
    stream = decoding.IncrementalText(tokenizer)
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert sum(1 for piece in pieces if piece) > 5


def test_streamed_pieces_join_to_the_batch_text(
    english_model: Any, english_settings: Any, english_features: np.ndarray, english_checkpoint: Path
) -> None:
    tokenizer = decoding.load_tokenizer(english_checkpoint)
    encode, decode_step = networks.torch_callables(english_model)
    ids = decoding.greedy_decode(encode, decode_step, english_features, english_settings)
    steps = decoding.iter_greedy(encode, decode_step, english_features, english_settings)
    joined = [""] * len(ids)
    done = [0] * len(ids)
    for row, piece, finished in decoding.iter_text_pieces(steps, tokenizer, english_settings.eos_token_id):
        assert done[row] == 0, "no pieces after a row is done"
        joined[row] += piece
        done[row] += finished
    assert done == [1] * len(ids)
    assert joined == [decoding.decode_text(tokenizer, row) for row in ids]
