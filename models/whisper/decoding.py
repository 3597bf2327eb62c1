"""Greedy Whisper decoding over a whole batch, written against two numpy callables (exactly like BLS handles).

``encode(input_features=...) -> {"cross_key_values": ...}`` runs once; ``decode_step(input_ids=...,
past_key_values=..., cross_key_values=...) -> {"logits": ..., "present_key_values": ...}`` runs once per token
for all unfinished rows; finished rows drop out of the batch (their cache rows are removed).

The result equals ``WhisperForConditionalGeneration.generate`` greedy (short-form, no timestamps) for the same
checkpoint: the same prompt (start of transcript, language, task, no-timestamps; language detected from the
first step when not given), ``suppress_tokens`` at every step, ``begin_suppress_tokens`` at the first generated
step, and the same length limit. One deliberate difference: for a multilingual model the task token is always
present (``transcribe`` by default), as in the official checkpoints' ``forced_decoder_ids``.

Only numpy is needed; text decoding takes any tokenizer with ``decode(ids, skip_special_tokens=True)``
(:func:`load_tokenizer` returns a ``tokenizers.Tokenizer``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

NumpyFn = Callable[..., Mapping[str, np.ndarray]]
TASKS = ("transcribe", "translate")

# Whisper's languages: code -> English name (plus a few aliases accepted by name below).
LANGUAGES: dict[str, str] = dict(
    item.split(":")
    for item in (
        "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese pt:portuguese "
        "tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian id:indonesian hi:hindi "
        "fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek ms:malay cs:czech ro:romanian da:danish "
        "hu:hungarian ta:tamil no:norwegian th:thai ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin "
        "mi:maori ml:malayalam cy:welsh sk:slovak te:telugu fa:persian lv:latvian bn:bengali sr:serbian "
        "az:azerbaijani sl:slovenian kn:kannada et:estonian mk:macedonian br:breton eu:basque is:icelandic "
        "hy:armenian ne:nepali mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili gl:galician "
        "mr:marathi pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali af:afrikaans oc:occitan "
        "ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao uz:uzbek "
        "fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese sa:sanskrit "
        "lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese tt:tatar haw:hawaiian "
        "ln:lingala ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese"
    ).split()
)
LANGUAGE_ALIASES = {
    "burmese": "my",
    "valencian": "ca",
    "flemish": "nl",
    "haitian": "ht",
    "letzeburgesch": "lb",
    "pushto": "ps",
    "panjabi": "pa",
    "moldavian": "ro",
    "moldovan": "ro",
    "sinhalese": "si",
    "castilian": "es",
    "mandarin": "zh",
}


class PromptError(ValueError):
    """A language or task the model cannot use; the message names the value and what is accepted."""


class TextDecoder(Protocol):
    """What text decoding needs from a tokenizer."""

    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


# ----------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GenerationSettings:
    """The parts of a Whisper checkpoint's (generation) config that greedy decoding follows."""

    decoder_start_token_id: int
    eos_token_id: int
    no_timestamps_token_id: int | None = None
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    lang_to_id: Mapping[str, int] = field(default_factory=dict)
    task_to_id: Mapping[str, int] = field(default_factory=dict)
    max_length: int = 448
    max_target_positions: int = 448

    @property
    def is_multilingual(self) -> bool:
        """Whether prompts carry language and task tokens."""
        return bool(self.lang_to_id)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> GenerationSettings:
        """Read ``config.json`` and ``generation_config.json`` of a Hugging Face checkpoint directory."""
        root = Path(path)
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
        gen_file = root / "generation_config.json"
        gen = json.loads(gen_file.read_text(encoding="utf-8")) if gen_file.is_file() else {}

        def pick(key: str, default: object = None) -> object:
            value = gen.get(key)
            return config.get(key, default) if value is None else value

        eos = pick("eos_token_id")
        multilingual = gen.get("is_multilingual", bool(gen.get("lang_to_id")))
        max_target = int(config.get("max_target_positions", 448))
        return cls(
            decoder_start_token_id=int(pick("decoder_start_token_id")),  # type: ignore[call-overload]
            eos_token_id=int(eos[0] if isinstance(eos, list) else eos),  # type: ignore[call-overload,index]
            no_timestamps_token_id=gen.get("no_timestamps_token_id"),
            suppress_tokens=tuple(pick("suppress_tokens") or ()),  # type: ignore[arg-type]
            begin_suppress_tokens=tuple(pick("begin_suppress_tokens") or ()),  # type: ignore[arg-type]
            lang_to_id=dict(gen.get("lang_to_id") or {}) if multilingual else {},
            task_to_id=dict(gen.get("task_to_id") or {}) if multilingual else {},
            max_length=int(gen.get("max_length") or max_target),
            max_target_positions=max_target,
        )

    def language_id(self, language: str | None) -> int | None:
        """Token id for ``language`` (code like ``"de"``, name like ``"german"`` or token ``"<|de|>"``).

        ``None`` means detect (multilingual) or nothing to add (English-only). An English-only model accepts
        English and refuses other languages. Raises :class:`PromptError` for unknown or unsupported ones.
        """
        if language is None or not language.strip():
            return None
        key = language.strip().lower()
        token_match = key.startswith("<|") and key.endswith("|>")
        code = key[2:-2] if token_match else LANGUAGE_ALIASES.get(key, key)
        if code not in LANGUAGES:
            by_name = {name.replace("_", " "): c for c, name in LANGUAGES.items()}
            code = by_name.get(key.replace("_", " "), code)
        if code not in LANGUAGES:
            raise PromptError(
                f"LANGUAGE {language!r} is not a Whisper language (use a code like 'en' or 'de')"
            )
        if not self.is_multilingual:
            if code == "en":
                return None
            raise PromptError(f"this model is English-only; LANGUAGE {language!r} is not supported")
        token = f"<|{code}|>"
        if token not in self.lang_to_id:
            raise PromptError(f"LANGUAGE {language!r} is not supported by this model")
        return int(self.lang_to_id[token])

    def task_id(self, task: str | None) -> int | None:
        """Token id for ``task`` (``transcribe`` or ``translate``; ``None`` means transcribe)."""
        name = (task or "").strip().lower() or "transcribe"
        if name not in TASKS:
            raise PromptError(f"TASK {task!r} is not supported; use 'transcribe' or 'translate'")
        if not self.is_multilingual:
            if name == "translate":
                raise PromptError("this model is English-only; TASK 'translate' is not supported")
            return None
        return int(self.task_to_id[name])

    def prompt(self, language_id: int | None, task_id: int | None) -> list[int]:
        """Decoder prompt: start of transcript, language, task, no-timestamps (as the model uses them)."""
        tokens = [self.decoder_start_token_id]
        if self.is_multilingual:
            if language_id is None:
                raise PromptError("a multilingual prompt needs a language (given or detected)")
            tokens.append(language_id)
            tokens.append(task_id if task_id is not None else int(self.task_to_id["transcribe"]))
        if self.no_timestamps_token_id is not None:
            tokens.append(int(self.no_timestamps_token_id))
        return tokens

    def max_new_tokens(self, prompt_length: int, requested: int | None = None) -> int:
        """How many tokens (end-of-text included) may follow a prompt of ``prompt_length`` tokens."""
        room = self.max_target_positions - prompt_length
        if requested is not None:
            return max(0, min(requested, room))
        initial = min(self.max_target_positions // 2 - 1, prompt_length)
        return max(0, min(self.max_length + initial, self.max_target_positions) - prompt_length)


@dataclass(frozen=True)
class RowPrompt:
    """A row's requested language and task as token ids (``language_id=None`` on a multilingual model: detect)."""

    language_id: int | None = None
    task_id: int | None = None


def row_prompt(
    settings: GenerationSettings, language: str | None = None, task: str | None = None
) -> RowPrompt:
    """Check one request's LANGUAGE / TASK (raising :class:`PromptError`) and turn them into token ids."""
    return RowPrompt(settings.language_id(language), settings.task_id(task))


# ----------------------------------------------------------------------------------------------- greedy loop


@dataclass(frozen=True)
class StepResult:
    """One decoding step: the token chosen for each row still running, and which rows stopped with it.

    ``rows`` are indices into the original batch. A row stops when it picks end-of-text (that token is
    reported but is not text) or reaches the length limit.
    """

    rows: np.ndarray
    tokens: np.ndarray
    finished: np.ndarray


def _masked_argmax(logits: np.ndarray, *banned: Sequence[int]) -> np.ndarray:
    scores = np.array(logits, dtype=np.float32, copy=True)
    vocab = scores.shape[-1]
    for ids in banned:
        valid = [i for i in ids if 0 <= i < vocab]
        if valid:
            scores[:, valid] = -np.inf
    return scores.argmax(axis=-1)


def _detect_languages(logits: np.ndarray, settings: GenerationSettings) -> np.ndarray:
    lang_ids = np.array(sorted(set(settings.lang_to_id.values())), dtype=np.int64)
    return lang_ids[np.asarray(logits)[:, lang_ids].argmax(axis=-1)]


def iter_greedy(
    encode: NumpyFn,
    decode_step: NumpyFn,
    input_features: np.ndarray,
    settings: GenerationSettings,
    prompts: Sequence[RowPrompt] | None = None,
    max_new_tokens: int | None = None,
) -> Iterator[StepResult]:
    """Greedy-decode a batch of features ``[B, n_mels, 3000]``, yielding one :class:`StepResult` per step.

    ``prompts`` gives each row's language/task (default: detect / transcribe). Language detection costs no
    extra call: the first step feeds only the start token to every row, the next the rest of the prompt.
    """
    batch = int(input_features.shape[0])
    prompts = list(prompts) if prompts is not None else [RowPrompt()] * batch
    if len(prompts) != batch:
        raise ValueError(f"{len(prompts)} prompts for a batch of {batch}")
    if batch == 0:
        return
    cross = np.asarray(encode(input_features=input_features)["cross_key_values"])
    _, layers, _, heads, _, head_dim = cross.shape
    past = np.zeros((batch, layers, 2, heads, 0, head_dim), dtype=cross.dtype)

    def step(input_ids: np.ndarray) -> np.ndarray:
        nonlocal past
        outputs = decode_step(
            input_ids=np.ascontiguousarray(input_ids, dtype=np.int64),
            past_key_values=past,
            cross_key_values=cross,
        )
        past = np.asarray(outputs["present_key_values"])
        return np.asarray(outputs["logits"])

    language_ids = [p.language_id for p in prompts]
    if settings.is_multilingual and any(lang is None for lang in language_ids):
        logits = step(np.full((batch, 1), settings.decoder_start_token_id, dtype=np.int64))
        detected = _detect_languages(logits, settings)
        language_ids = [
            int(d) if lang is None else lang for lang, d in zip(language_ids, detected, strict=True)
        ]
        full = [settings.prompt(lang, p.task_id) for lang, p in zip(language_ids, prompts, strict=True)]
        logits = step(np.array([tokens[1:] for tokens in full], dtype=np.int64))
    else:
        full = [settings.prompt(lang, p.task_id) for lang, p in zip(language_ids, prompts, strict=True)]
        logits = step(np.array(full, dtype=np.int64))

    limit = settings.max_new_tokens(len(full[0]), max_new_tokens)
    rows = np.arange(batch)
    if limit == 0:
        yield StepResult(rows, np.full(batch, settings.eos_token_id, dtype=np.int64), np.ones(batch, bool))
        return
    for generated in range(1, limit + 1):
        banned = [settings.suppress_tokens]
        if generated == 1:
            banned.append(settings.begin_suppress_tokens)
        tokens = _masked_argmax(logits, *banned)
        finished = (tokens == settings.eos_token_id) | (generated == limit)
        yield StepResult(rows, tokens.astype(np.int64), finished)
        if finished.all():
            return
        keep = ~finished
        rows, tokens = rows[keep], tokens[keep]
        if not keep.all():
            cross, past = cross[keep], past[keep]
        logits = step(tokens[:, None])


def greedy_decode(
    encode: NumpyFn,
    decode_step: NumpyFn,
    input_features: np.ndarray,
    settings: GenerationSettings,
    prompts: Sequence[RowPrompt] | None = None,
    max_new_tokens: int | None = None,
) -> list[list[int]]:
    """Generated token ids per row (prompt and end-of-text excluded); see :func:`iter_greedy`."""
    results: list[list[int]] = [[] for _ in range(int(input_features.shape[0]))]
    for result in iter_greedy(encode, decode_step, input_features, settings, prompts, max_new_tokens):
        for row, token in zip(result.rows.tolist(), result.tokens.tolist(), strict=True):
            if token != settings.eos_token_id:
                results[row].append(token)
    return results


# ----------------------------------------------------------------------------------------------- text


def load_tokenizer(path: str | os.PathLike[str]) -> TextDecoder:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` in a checkpoint directory (or the file itself)."""
    from tokenizers import Tokenizer

    file = Path(path)
    return Tokenizer.from_file(str(file / "tokenizer.json" if file.is_dir() else file))  # type: ignore[return-value]


def decode_text(tokenizer: TextDecoder, ids: Sequence[int]) -> str:
    """Text of generated ids, special tokens removed."""
    return tokenizer.decode(list(ids), skip_special_tokens=True)


class IncrementalText:
    """Turns a growing token sequence into text pieces that join to the text of the whole sequence.

    Each :meth:`push` decodes the whole sequence and returns what is new since the last piece; text ending in
    an incomplete UTF-8 sequence (a replacement character) is held back until later tokens complete it or
    :meth:`flush` ends the row.
    """

    def __init__(self, tokenizer: TextDecoder) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        """Add one token; return the new text it completes (possibly empty)."""
        self.ids.append(int(token_id))
        text = decode_text(self.tokenizer, self.ids)
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        return self._emit(text)

    def flush(self) -> str:
        """Return whatever text is still held back."""
        return self._emit(decode_text(self.tokenizer, self.ids))

    def _emit(self, text: str) -> str:
        piece = text[len(self.emitted) :] if text.startswith(self.emitted) else text
        self.emitted = text
        return piece


class TextPieces:
    """Per-row :class:`IncrementalText` state for a batch, fed one :class:`StepResult` at a time."""

    def __init__(self, tokenizer: TextDecoder, eos_token_id: int) -> None:
        self.tokenizer = tokenizer
        self.eos_token_id = eos_token_id
        self.texts: dict[int, IncrementalText] = {}

    def step(self, result: StepResult) -> list[tuple[int, str, bool]]:
        """``(row, piece, done)`` for every row of the step (the piece may be empty); with ``done=True``
        the piece also carries whatever text the row still held back."""
        items = []
        for row, token, done in zip(
            result.rows.tolist(), result.tokens.tolist(), result.finished.tolist(), strict=True
        ):
            text = self.texts.setdefault(row, IncrementalText(self.tokenizer))
            piece = text.push(token) if token != self.eos_token_id else ""
            if done:
                piece += text.flush()
            items.append((row, piece, done))
        return items


def iter_text_pieces(
    steps: Iterator[StepResult], tokenizer: TextDecoder, eos_token_id: int
) -> Iterator[tuple[int, str, bool]]:
    """Stream ``(row, piece, done)`` from :func:`iter_greedy` steps; a row's pieces join to its full text.

    Every step yields one item per running row (the piece may be empty); the item with ``done=True`` is the
    row's last and carries any held-back text.
    """
    pieces = TextPieces(tokenizer, eos_token_id)
    for result in steps:
        yield from pieces.step(result)
