"""pb_utils.Tensor and the BYTES helpers, as the Python backend stub implements them."""

from __future__ import annotations

import numpy as np
import pytest

from pbkit.testing.fake import Tensor, TritonModelException, pb_utils
from pbkit.testing.fake.tensor import as_bytes_array, received


def test_positional_arguments_only() -> None:
    with pytest.raises(TypeError, match="incompatible constructor arguments"):
        Tensor(name="x", numpy_array=np.zeros(2))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Invoked with: 'x', \[1, 2\]"):
        Tensor("x", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Tensor("x", np.float32(1.0))  # type: ignore[arg-type]


def test_name_rules() -> None:
    with pytest.raises(TritonModelException, match="Tensor name cannot be an empty string"):
        Tensor("", np.zeros(1))
    assert Tensor(b"raw", np.zeros(1)).name() == "raw"


@pytest.mark.parametrize(
    ("dtype", "accepted"),
    [
        (np.bool_, True),
        (np.uint8, True),
        (np.uint64, True),
        (np.int16, True),
        (np.float16, True),
        (np.float64, True),
        (np.object_, True),
        ("S3", True),
        ("U3", False),
        (np.complex64, False),
        ("datetime64[s]", False),
        (">f4", False),
    ],
)
def test_dtype_rules(dtype: object, accepted: bool) -> None:
    array = np.zeros(2, dtype=dtype)  # type: ignore[call-overload]
    if accepted:
        assert Tensor("x", array).shape() == [2]
    else:
        with pytest.raises(TritonModelException, match="NumPy dtype is not supported"):
            Tensor("x", array)


def test_as_numpy_is_the_array_or_a_contiguous_copy() -> None:
    array = np.arange(6, dtype=np.float32)
    assert Tensor("x", array).as_numpy() is array
    transposed = array.reshape(2, 3).T
    tensor = Tensor("x", transposed)
    assert tensor.as_numpy().flags.c_contiguous
    assert tensor.shape() == [3, 2]
    np.testing.assert_array_equal(tensor.as_numpy(), transposed)
    assert Tensor("x", np.array(2.0)).shape() == []


def test_bytes_tensors_keep_their_elements_and_cross_as_bytes() -> None:
    tensor = Tensor("x", np.array(["héllo", b"raw", 7], dtype=object))
    assert tensor.as_numpy().tolist() == ["héllo", b"raw", 7]
    other_side = received(tensor)
    assert other_side.as_numpy().tolist() == ["héllo".encode(), b"raw", b"7"]
    fixed = Tensor("x", np.array([b"ab\x00", b"c"]))
    assert fixed.as_numpy().dtype == np.dtype("S3")
    assert received(fixed).as_numpy().tolist() == [b"ab", b"c"]


def test_received_copies_numeric_data() -> None:
    array = np.arange(3, dtype=np.int32)
    copy = received(Tensor("x", array)).as_numpy()
    copy[0] = 9
    assert array[0] == 0


def test_triton_dtype_is_broken_like_the_binding() -> None:
    with pytest.raises(TypeError, match="TRITONSERVER_datatype_enum"):
        Tensor("x", np.zeros(1)).triton_dtype()


def test_dlpack_round_trip_and_errors() -> None:
    tensor = Tensor("x", np.arange(4, dtype=np.int32))
    again = Tensor.from_dlpack("y", tensor.to_dlpack())
    assert again.name() == "y" and again.as_numpy().tolist() == [0, 1, 2, 3]
    assert Tensor.from_dlpack("z", tensor).as_numpy().tolist() == [0, 1, 2, 3]
    assert Tensor.from_dlpack("n", np.arange(3, dtype=np.int16)).as_numpy().tolist() == [0, 1, 2]
    assert tensor.__dlpack_device__() == (1, 0)
    assert tensor.is_cpu()
    with pytest.raises(TritonModelException, match="DLPack does not have support for string tensors"):
        Tensor("s", np.array([b"a"], dtype=object)).to_dlpack()
    with pytest.raises(TritonModelException, match="Provided tensor is not supported"):
        Tensor.from_dlpack("y", 5)
    with pytest.raises(TritonModelException, match="Tensor name cannot be an empty string"):
        Tensor.from_dlpack("", tensor.to_dlpack())


def test_dlpack_with_torch_bool_bf16_and_strides() -> None:
    torch = pytest.importorskip("torch")
    flags = Tensor.from_dlpack("b", torch.tensor([True, False]))
    assert flags.as_numpy().tolist() == [True, False]
    assert torch.from_dlpack(flags.to_dlpack()).tolist() == [True, False]
    half = Tensor.from_dlpack("h", torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
    assert half.shape() == [2]
    with pytest.raises(TritonModelException, match="Tensor dtype is BF16"):
        half.as_numpy()
    back = torch.from_dlpack(half.to_dlpack())
    assert back.dtype == torch.bfloat16 and back.tolist() == [1.5, -2.0]
    with pytest.raises(TritonModelException, match="DLPack tensor is not contiguous"):
        Tensor.from_dlpack("t", torch.arange(6).reshape(2, 3).T)
    source = torch.arange(3, dtype=torch.int32)
    copied = Tensor.from_dlpack("c", source)
    source[0] = 7
    assert copied.as_numpy().tolist() == [0, 1, 2]
    exported = torch.from_dlpack(Tensor("e", np.arange(3, dtype=np.int64)).to_dlpack())
    assert exported.tolist() == [0, 1, 2]


def test_serialize_and_deserialize() -> None:
    data = pb_utils.serialize_byte_tensor(np.array([[b"ab"], ["c"]], dtype=object))
    assert data == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
    assert pb_utils.serialize_byte_tensor(np.array([], dtype=object)) == ()
    assert pb_utils.serialize_byte_tensor(np.zeros(2)) is None
    decoded = pb_utils.deserialize_bytes_tensor(data)
    assert decoded.dtype == np.object_ and decoded.tolist() == [b"ab", b"c"]
    assert as_bytes_array(np.array([["x", b"y"]], dtype=object)).tolist() == [[b"x", b"y"]]
