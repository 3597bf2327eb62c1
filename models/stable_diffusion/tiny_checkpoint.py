"""Write a tiny, randomly initialised Stable Diffusion checkpoint in the standard diffusers folder layout.

No package ships Stable Diffusion weights, so tests and local runs use this checkpoint: a 2-layer CLIP text
encoder (hidden size 32), a two-level UNet (1.4 M parameters) and a two-level AutoencoderKL whose decoder
upsamples by 2 (not 8). It loads exactly like a real checkpoint, through ``from_pretrained(path/subfolder)``:

    OUT_DIR/model_index.json
    OUT_DIR/scheduler/scheduler_config.json      (PNDM, the Stable Diffusion 1.x training schedule)
    OUT_DIR/text_encoder/{config.json,model.safetensors}
    OUT_DIR/tokenizer/{vocab.json,merges.txt,tokenizer.json,...}   (the real OpenAI CLIP vocabulary)
    OUT_DIR/unet/{config.json,diffusion_pytorch_model.safetensors}
    OUT_DIR/vae/{config.json,diffusion_pytorch_model.safetensors}

Weights come from a fixed seed, so writing twice gives the same tensors. CLI:
``python models/stable_diffusion/tiny_checkpoint.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import clip_vocab

DEFAULT_SEED = 0

TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "vocab_size": clip_vocab.VOCAB_SIZE,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": clip_vocab.MODEL_MAX_LENGTH,
    "projection_dim": 32,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}

UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "norm_num_groups": 32,
}

VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}

#: The noise schedule Stable Diffusion 1.x was trained with, as shipped in its scheduler_config.json.
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}


def build_components(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Construct the tiny text encoder, UNet, VAE and PNDM scheduler with weights drawn from ``seed``."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG)).eval()
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    torch.manual_seed(seed + 2)
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    # from_config keeps keys PNDM ignores (clip_sample), as real checkpoints do for DDIM built from them.
    scheduler = PNDMScheduler.from_config(SCHEDULER_CONFIG)
    return {"text_encoder": text_encoder, "unet": unet, "vae": vae, "scheduler": scheduler}


def is_complete(directory: str | Path) -> bool:
    """Whether ``directory`` holds every file of a checkpoint written by :func:`write_tiny_checkpoint`."""
    root = Path(directory)
    required = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    return all((root / name).is_file() for name in required)


def write_tiny_checkpoint(directory: str | Path, seed: int = DEFAULT_SEED, overwrite: bool = False) -> Path:
    """Write the tiny checkpoint into ``directory`` (skipped when complete unless ``overwrite``); return it.

    The folder is what ``StableDiffusionPipeline.save_pretrained`` writes (no safety checker, no feature
    extractor), with the tokenizer built offline from the open-clip-torch vocabulary, so
    ``StableDiffusionPipeline.from_pretrained(directory)`` loads it too.
    """
    root = Path(directory)
    if is_complete(root) and not overwrite:
        return root
    components = build_components(seed)
    clip_vocab.write_clip_tokenizer(root / "tokenizer")
    for name, component in components.items():
        component.save_pretrained(root / name)
    # model_index.json as save_pretrained writes it; the tokenizer folder keeps the offline-built files.
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": _diffusers_version()}
    index.update(
        {
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", type(components["scheduler"]).__name__],
            "text_encoder": ["transformers", type(components["text_encoder"]).__name__],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", type(components["unet"]).__name__],
            "vae": ["diffusers", type(components["vae"]).__name__],
        }
    )
    clip_vocab.write_json(root / "model_index.json", index)
    return root


def _diffusers_version() -> str:
    import diffusers

    return str(diffusers.__version__)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python tiny_checkpoint.py OUT_DIR [--overwrite]``."""
    args = sys.argv[1:] if argv is None else argv
    overwrite = "--overwrite" in args
    paths = [arg for arg in args if arg != "--overwrite"]
    if len(paths) != 1:
        print("usage: python tiny_checkpoint.py OUT_DIR [--overwrite]", file=sys.stderr)
        return 2
    print(write_tiny_checkpoint(paths[0], overwrite=overwrite))
    return 0


if __name__ == "__main__":
    sys.exit(main())
