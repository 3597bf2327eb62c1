{% set dtype = cookiecutter.dtype %}
{% set dims = cookiecutter.dims.replace(" ", "").replace(",", ", ") %}
{% set tensor = dtype ~ "[" ~ dims ~ "]" %}
{% set is_float = dtype in ["FP16", "FP32", "FP64"] %}
{% set has_validate = is_float or dtype == "BYTES" %}
{% set inp = cookiecutter.input_name %}
{% set out = cookiecutter.output_name %}
{% set outputs = cookiecutter.class_name ~ "Outputs" %}
"""{{ cookiecutter.description }}

The pbkit declaration of the Triton model ``{{ cookiecutter.model_name }}``: ``pbkit build . -o model_repository``
writes ``{{ cookiecutter.model_name }}/config.pbtxt`` and ``{{ cookiecutter.model_name }}/1/model.py`` from it.

As generated, ``predict`` {% if dtype == "BYTES" %}upper-cases each UTF-8 string{% elif dtype == "BOOL" %}negates each value{% elif is_float %}doubles each value{% else %}doubles each value (wrapping around on overflow){% endif %}: replace that with your model.
{% if cookiecutter.decoupled %}
The model is decoupled: each request gets ``responses`` responses (a model config parameter).
{% endif %}
"""

{% if cookiecutter.decoupled %}
from collections.abc import Iterator
{% endif %}
from typing import TypedDict

{% if has_validate or not cookiecutter.use_torch %}
import numpy as np
{% endif %}
import pbkit
from pbkit import {{ dtype }}

{% if cookiecutter.decoupled %}
#: How many responses each request gets, unless the model config parameter ``responses`` says otherwise.
DEFAULT_RESPONSES = 3

{% endif %}

class {{ outputs }}(TypedDict):
    {{ out }}: {{ tensor }}

{% if not cookiecutter.use_torch %}

def transform(values: np.ndarray) -> np.ndarray:
    """The model's computation on a batch (the batch axis first)."""
{% if dtype == "BYTES" %}
    upper = np.vectorize(lambda value: value.decode("utf-8").upper().encode("utf-8"), otypes=[object])
    return upper(values)
{% elif dtype == "BOOL" %}
    return np.logical_not(values)
{% else %}
    return values * np.array(2, dtype=values.dtype)
{% endif %}

{% endif %}

@pbkit.model(
    name="{{ cookiecutter.model_name }}",
{% if cookiecutter.batching %}
    max_batch_size=8,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=1000),
{% else %}
    max_batch_size=0,
{% endif %}
{% if cookiecutter.decoupled %}
    parameters={"responses": DEFAULT_RESPONSES},
{% endif %}
)
class {{ cookiecutter.class_name }}:
    """{{ cookiecutter.description }}"""
{% if cookiecutter.use_torch or cookiecutter.decoupled %}

    def setup(self, ctx: pbkit.SetupContext) -> None:
        """Called once per model instance when Triton loads the model."""
{% if cookiecutter.use_torch %}
        import torch  # imported here, so that `pbkit build` does not need to import torch

        self.torch = torch
        self.device = torch.device(ctx.device)  # "cuda:<id>" on a GPU instance, else "cpu"
{% endif %}
{% if cookiecutter.decoupled %}
        self.responses = int(ctx.parameter("responses", str(DEFAULT_RESPONSES)))
{% endif %}
{% endif %}
{% if has_validate %}

    def validate(self, {{ inp }}: np.ndarray) -> None:
        """Checks one request; raising pbkit.InvalidArgument fails only that request (INVALID_ARG)."""
{% if is_float %}
        if not np.all(np.isfinite({{ inp }})):
            raise pbkit.InvalidArgument("{{ inp }} must hold finite numbers (no NaN or infinity)")
{% else %}
        for value in {{ inp }}.reshape(-1):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise pbkit.InvalidArgument(f"{{ inp }} must be UTF-8 text: {exc}") from exc
{% endif %}
{% endif %}

{% if cookiecutter.decoupled %}
    def predict(self, {{ inp }}: {{ tensor }}) -> Iterator[{{ outputs }}]:
        """Streams ``self.responses`` responses per request, each with the whole result."""
{% else %}
    def predict(self, {{ inp }}: {{ tensor }}) -> {{ outputs }}:
        """Runs once per batch of requests; the batch axis comes first."""
{% endif %}
{% if cookiecutter.use_torch %}
        values = self.torch.tensor({{ inp }}, device=self.device)
        # A torch tensor is a valid output: pbkit sends CPU tensors as numpy and GPU tensors via DLPack.
{% if dtype == "BOOL" %}
        result = ~values
{% else %}
        result = values * 2
{% endif %}
{% else %}
        result = transform({{ inp }})
{% endif %}
{% if cookiecutter.decoupled %}
        for _ in range(self.responses):
            yield {"{{ out }}": result}
{% else %}
        return {"{{ out }}": result}
{% endif %}
