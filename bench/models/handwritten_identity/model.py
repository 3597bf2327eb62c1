"""The hand-written side of the overhead benchmark: the minimal Python-backend identity model.

It answers each request of an ``execute`` call with its own input, as a model written directly
against ``triton_python_backend_utils`` would. The benchmark serves it with the config that pbkit
generated for ``identity_pbkit`` (only the name differs).
"""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", data)]))
        return responses
