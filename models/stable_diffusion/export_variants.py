"""Export the ONNX (and TensorRT) variants of the three submodels with ``pbkit export``::

    pbkit export models/stable_diffusion/export_variants.py:targets \\
        --format onnx --format tensorrt --exporter torchscript

writes ``onnx/text_encoder.onnx``, ``onnx/unet.onnx`` and ``onnx/vae_decoder.onnx`` next to this file (the
paths ``sd_submodels.py`` declares), checks each against torch with ONNX Runtime, writes a one-model
repository per variant under ``variant_repositories/`` and prints the ``trtexec`` command that builds each
``engines/<name>.plan`` on a GPU machine (it runs it when TensorRT is installed). Then
``pbkit build models/ --variant onnx`` (or ``tensorrt``) serves the exported files.

The checkpoint is the one ``pbkit build`` would use (``PBKIT_SD_CHECKPOINT``, else ``checkpoints/sd-tiny``).
The UNet graph is traced at a latent size divisible by its downsampling factor, which is why the
orchestrator only accepts sizes that are multiples of the VAE factor times that factor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Most prompts per orchestrator batch, and so the TensorRT profiles' largest batch.
MAX_PROMPTS = 4


def shape_profile(dims: Any) -> Any:
    """The TensorRT profile covering every size the orchestrator accepts for a checkpoint of ``dims``.

    Images from one size multiple (VAE factor × UNet downsampling) to twice the default size, optimised for
    the default size; batches of 1 to :data:`MAX_PROMPTS` prompts (twice as many UNet and text rows).
    """
    import networks

    default = dims.default_sample_size * dims.vae_scale_factor
    smallest = dims.vae_scale_factor * dims.unet_downsample_factor
    return networks.ShapeProfile(
        min_batch=1,
        opt_batch=1,
        max_batch=MAX_PROMPTS,
        min_image=(smallest, smallest),
        opt_image=(default, default),
        max_image=(2 * default, 2 * default),
    )


def targets(checkpoint: str | Path | None = None) -> list[Any]:
    """The three networks of ``checkpoint`` as :class:`pbkit.export.ExportTarget` (the factory of
    ``pbkit export``): example inputs at the default size with two prompts, a parity check at another size
    with three prompts, named dynamic axes and the TensorRT profile of :func:`shape_profile`."""
    import networks
    import sd_submodels

    from pbkit.export import ExportTarget

    root = Path(checkpoint or sd_submodels.default_checkpoint())
    dims = networks.ModelDims.from_checkpoint(root)
    specs = networks.network_specs(dims)
    profile = shape_profile(dims).input_shapes(dims)
    default = dims.default_sample_size * dims.vae_scale_factor
    other_size = (default + dims.vae_scale_factor * dims.unet_downsample_factor, default)
    submodels = {
        networks.TEXT_ENCODER: sd_submodels.text_encoder,
        networks.UNET: sd_submodels.unet,
        networks.VAE_DECODER: sd_submodels.vae_decoder,
    }
    result = []
    for network, module in networks.load_networks(root).items():
        spec = specs[network]
        bounds = profile[network]
        result.append(
            ExportTarget(
                module=module,
                submodel=submodels[network],
                example_inputs=networks.example_inputs(network, dims, batch=2),
                dynamic_axes={
                    tensor.name: dict(tensor.dynamic_axes)
                    for tensor in (*spec.inputs, *spec.outputs)
                    if tensor.dynamic_axes
                },
                check_inputs=[networks.example_inputs(network, dims, batch=3, image_size=other_size, seed=1)],
                min_shapes={name: shapes[0] for name, shapes in bounds.items()},
                opt_shapes={name: shapes[1] for name, shapes in bounds.items()},
                max_shapes={name: shapes[2] for name, shapes in bounds.items()},
            )
        )
    return result
