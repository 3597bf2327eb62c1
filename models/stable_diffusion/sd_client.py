"""Ask a running Triton for an image from the ``stable_diffusion`` models and save it as a PNG::

    python models/stable_diffusion/sd_client.py "a photo of a cat" -o cat.png --seed 42 --steps 20
    python models/stable_diffusion/sd_client.py "a photo of a cat" -o cat.png --stream   # progress, then image

Uses ``tritonclient.grpc`` (``--url``, default ``127.0.0.1:8001``). Only numpy is imported at module level;
tritonclient and Pillow are imported when used.
"""

from __future__ import annotations

import argparse
import queue
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "stable_diffusion"
STREAM_MODEL = "stable_diffusion_stream"
#: Input name → numpy dtype of the orchestrators' optional inputs.
OPTION_DTYPES: dict[str, Any] = {
    "NEGATIVE_PROMPT": np.object_,
    "STEPS": np.int32,
    "GUIDANCE_SCALE": np.float32,
    "SEED": np.int64,
    "HEIGHT": np.int32,
    "WIDTH": np.int32,
    "SCHEDULER": np.object_,
}


def request_tensors(
    prompt: str,
    *,
    negative_prompt: str | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int | None = None,
    height: int | None = None,
    width: int | None = None,
    scheduler: str | None = None,
) -> dict[str, np.ndarray]:
    """The input tensors of one request (batch of one, ``[1, 1]`` each); ``None`` options are left out."""
    values = {
        "NEGATIVE_PROMPT": negative_prompt,
        "STEPS": steps,
        "GUIDANCE_SCALE": guidance_scale,
        "SEED": seed,
        "HEIGHT": height,
        "WIDTH": width,
        "SCHEDULER": scheduler,
    }
    tensors = {"PROMPT": np.array([[prompt.encode("utf-8")]], dtype=np.object_)}
    for name, value in values.items():
        if value is None:
            continue
        dtype = OPTION_DTYPES[name]
        item = value.encode("utf-8") if isinstance(value, str) else value
        tensors[name] = np.array([[item]], dtype=dtype)
    return tensors


def _grpc_inputs(tensors: dict[str, np.ndarray]) -> list[Any]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in tensors.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def generate(url: str, prompt: str, timeout: float = 600.0, **options: Any) -> np.ndarray:
    """One image, uint8 ``[H, W, 3]``, from the ``stable_diffusion`` model at ``url`` (gRPC)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        result = client.infer(MODEL, _grpc_inputs(request_tensors(prompt, **options)), client_timeout=timeout)
    return np.asarray(result.as_numpy("IMAGE"))[0]


def stream(
    url: str, prompt: str, timeout: float = 600.0, **options: Any
) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """``(step, total, None)`` after each denoising step, then ``(total, total, image)``, from
    ``stable_diffusion_stream`` at ``url`` (gRPC streaming)."""
    import tritonclient.grpc as grpcclient

    responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
    with grpcclient.InferenceServerClient(url) as client:
        client.start_stream(lambda result, error: responses.put((result, error)), stream_timeout=timeout)
        try:
            client.async_stream_infer(
                STREAM_MODEL,
                _grpc_inputs(request_tensors(prompt, **options)),
                enable_empty_final_response=True,
            )
            while True:
                result, error = responses.get(timeout=timeout)
                if error is not None:
                    raise RuntimeError(f"{STREAM_MODEL}: {error}")
                response = result.get_response()
                if response.outputs:
                    step = int(result.as_numpy("STEP")[0, 0])
                    total = int(result.as_numpy("TOTAL_STEPS")[0, 0])
                    image = result.as_numpy("IMAGE")[0]
                    yield step, total, image if image.size else None
                final = response.parameters.get("triton_final_response")
                if final is None or final.bool_param:
                    return
        finally:
            client.stop_stream()


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 ``[H, W, 3]`` image as a PNG."""
    from PIL import Image

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Text to image with the stable_diffusion Triton models.")
    parser.add_argument("prompt")
    parser.add_argument("-o", "--output", default="image.png", help="PNG to write (default: %(default)s)")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address (default: %(default)s)")
    parser.add_argument("--negative-prompt")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--scheduler")
    parser.add_argument("--stream", action="store_true", help="show progress (stable_diffusion_stream)")
    args = parser.parse_args(argv)
    options = {
        "negative_prompt": args.negative_prompt,
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "seed": args.seed,
        "height": args.height,
        "width": args.width,
        "scheduler": args.scheduler,
    }
    if args.stream:
        image = None
        for step, total, image in stream(args.url, args.prompt, **options):
            print(f"step {step}/{total}" + (" (image)" if image is not None else ""), file=sys.stderr)
    else:
        image = generate(args.url, args.prompt, **options)
    if image is None:
        print("no image received", file=sys.stderr)
        return 1
    print(save_png(image, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
