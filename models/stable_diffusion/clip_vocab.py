"""Build the OpenAI CLIP BPE tokenizer files offline from the vocabulary shipped in ``open-clip-torch``.

The ``open_clip`` wheel carries ``bpe_simple_vocab_16e6.txt.gz`` (the merge list of OpenAI CLIP). From it this
module derives the Hugging Face layout (``vocab.json``, ``merges.txt``, ``tokenizer.json``, configs) so that
``CLIPTokenizer.from_pretrained(directory)`` works without the model hub. ``open_clip`` itself is never
imported (it needs torchvision); the file is located with :func:`importlib.util.find_spec`.

CLI: ``python clip_vocab.py OUT_DIR``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
#: 256 byte symbols + 256 end-of-word byte symbols + 48894 merges + 2 specials.
VOCAB_SIZE = 49408
MERGE_COUNT = VOCAB_SIZE - 2 * 256 - 2


def find_bpe_file() -> Path:
    """Locate ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package (not imported)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "open_clip is not installed; install the vocabulary with `pip install --no-deps open-clip-torch`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BPE_FILE_NAME
        if candidate.is_file():
            return candidate
    locations = list(spec.submodule_search_locations)
    raise FileNotFoundError(f"{BPE_FILE_NAME} not found in the open_clip package at {locations}")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte → printable unicode character table (256 entries, in vocabulary order)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codepoints = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + extra)
            extra += 1
    return {byte: chr(codepoint) for byte, codepoint in zip(printable, codepoints, strict=True)}


def read_merges(bpe_file: Path | None = None) -> list[tuple[str, str]]:
    """Read the merge pairs used by CLIP (the first :data:`MERGE_COUNT` after the header line)."""
    path = bpe_file or find_bpe_file()
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + MERGE_COUNT]]
    if len(merges) != MERGE_COUNT or any(len(pair) != 2 for pair in merges):
        raise ValueError(f"{path} does not look like the CLIP BPE merge list")
    return [(first, second) for first, second in merges]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token → id in CLIP order: bytes, bytes + ``</w>``, merged symbols, then the two special tokens."""
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [symbol + "</w>" for symbol in byte_symbols]
    tokens += ["".join(pair) for pair in merges]
    tokens += [START_OF_TEXT, END_OF_TEXT]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"expected {VOCAB_SIZE} distinct tokens, built {len(vocab)}")
    return vocab


def tokenizer_config() -> dict[str, object]:
    """The ``tokenizer_config.json`` contents of the OpenAI CLIP tokenizer."""
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": START_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "pad_token": END_OF_TEXT,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }


def special_tokens_map() -> dict[str, str]:
    """The ``special_tokens_map.json`` contents of the OpenAI CLIP tokenizer."""
    return {
        "bos_token": START_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "pad_token": END_OF_TEXT,
    }


def write_json(path: Path, content: object) -> None:
    """Write ``content`` as indented, key-sorted UTF-8 JSON with a trailing newline."""
    text = json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_clip_tokenizer(directory: str | Path, bpe_file: Path | None = None) -> Path:
    """Write ``vocab.json``, ``merges.txt``, ``tokenizer.json`` and the configs into ``directory``; return it.

    ``tokenizer.json`` is the serialized fast tokenizer (what transformers 5 loads first); ``vocab.json`` and
    ``merges.txt`` keep the directory loadable by other versions and by the slow tokenizer.
    """
    from transformers import CLIPTokenizer

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    merges = read_merges(bpe_file)
    vocab = build_vocab(merges)
    # transformers 5 takes the vocabulary and merges as objects: the old vocab_file=/merges_file= keyword
    # arguments are silently ignored and would give a three-token vocabulary.
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=MODEL_MAX_LENGTH,
    )
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{first} {second}\n" for first, second in merges)
    (out / "merges.txt").write_text(merges_text, encoding="utf-8")
    write_json(out / "tokenizer_config.json", tokenizer_config())
    write_json(out / "special_tokens_map.json", special_tokens_map())
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python clip_vocab.py OUT_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python clip_vocab.py OUT_DIR", file=sys.stderr)
        return 2
    print(write_clip_tokenizer(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
