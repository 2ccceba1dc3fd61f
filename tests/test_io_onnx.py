"""from_onnx: forward equals onnx's reference evaluator (float32, rtol 1e-5)."""

import os

import numpy as np
import pytest

import fastlrp as fl

from conftest import fwd_close, same_relevance

DATA = os.path.join(os.path.dirname(__file__), "data")


# ------------------------------------------------------------------------------ ONNX
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _graph(nodes, inits, in_shape, out_name="y"):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None] + list(in_shape))],
                          [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [None, None])],
                          [numpy_helper.from_array(np.asarray(v, np.float32) if v.dtype != np.int64 else v, k)
                           for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def onnx_mlp(rng):
    inits = {"w1": rng.normal(size=(5, 10)), "b1": rng.normal(size=5), "w2": rng.normal(size=(5, 4)),
             "b2": rng.normal(size=4), "w3": rng.normal(size=(4, 3)),
             "s": rng.uniform(0.5, 1.5, 4), "bb": rng.normal(size=4), "m": rng.normal(size=4) * 0.1,
             "v": rng.uniform(0.5, 2, 4)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1, alpha=0.5),
             helper.make_node("LeakyRelu", ["h1"], ["a1"], alpha=0.2),
             helper.make_node("MatMul", ["a1", "w2"], ["h2"]), helper.make_node("Add", ["h2", "b2"], ["h2b"]),
             helper.make_node("BatchNormalization", ["h2b", "s", "bb", "m", "v"], ["n2"], epsilon=1e-3),
             helper.make_node("Tanh", ["n2"], ["a2"]), helper.make_node("Dropout", ["a2"], ["d2"]),
             helper.make_node("Gemm", ["d2", "w3"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], axis=-1)]
    return _graph(nodes, inits, [10]), (6, 10)


def onnx_cnn(rng):
    inits = {"cw": rng.normal(size=(6, 3, 3, 3)) * 0.3, "cb": rng.normal(size=6) * 0.1,
             "s": rng.uniform(0.5, 1.5, 6), "bb": rng.normal(size=6), "m": rng.normal(size=6) * 0.1,
             "v": rng.uniform(0.5, 2, 6), "c2": rng.normal(size=(4, 6, 3, 3)) * 0.3,
             "shape": np.array([0, -1], dtype=np.int64), "w": rng.normal(size=(3, 16)), "b": rng.normal(size=3)}
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "c2"], ["c2o"], strides=[1, 1]),
             helper.make_node("Sigmoid", ["c2o"], ["s2"]),
             helper.make_node("AveragePool", ["s2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p2", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
    return _graph(nodes, inits, [3, 12, 12]), (4, 3, 12, 12)


def onnx_gap(rng):
    inits = {"cw": rng.normal(size=(4, 2, 3, 3)), "w": rng.normal(size=(4, 2))}
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], auto_pad="SAME_UPPER"),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"], axis=1), helper.make_node("Identity", ["f"], ["i"]),
             helper.make_node("MatMul", ["i", "w"], ["y"])]
    return _graph(nodes, inits, [2, 7, 7]), (3, 2, 7, 7)


@pytest.mark.parametrize("make", [onnx_mlp, onnx_cnn, onnx_gap])
def test_onnx_forward_and_relevance(tmp_path, make):
    rng = np.random.default_rng(3)
    m, shape = make(rng)
    onnx.checker.check_model(m)
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    x = rng.normal(size=shape).astype(np.float32)
    expected = ReferenceEvaluator(m).run(None, {"x": x})[0]
    model = fl.from_onnx(p)
    fwd_close(model.forward(x), expected)
    # reloading through the native format gives the same relevance
    model.save(tmp_path / "native.npz")
    same_relevance(model, fl.load(tmp_path / "native.npz"), x)


def test_onnx_bad_graphs(tmp_path):
    rng = np.random.default_rng(0)
    inits = {"w": rng.normal(size=(4, 4))}
    branch = _graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                     helper.make_node("Add", ["r", "h"], ["y"])], inits, [4])
    onnx.save(branch, tmp_path / "branch.onnx")
    model = fl.from_onnx(tmp_path / "branch.onnx")  # a residual join: a graph Model now
    assert isinstance(model, fl.Model) and isinstance(model.layers[-1], fl.Add)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    h = x.astype(np.float64) @ inits["w"].astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(model(x), np.maximum(h, 0) + h, rtol=1e-5, atol=1e-6)
    unknown = _graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "nowhere"], ["y"])],
                     {}, [4])
    onnx.save(unknown, tmp_path / "unknown.onnx")
    with pytest.raises(ValueError, match="'nowhere' is neither a constant nor an earlier node's output"):
        fl.from_onnx(tmp_path / "unknown.onnx")
    lstm = _graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Erf", ["h"], ["y"])], inits, [4])
    onnx.save(lstm, tmp_path / "erf.onnx")
    with pytest.raises(ValueError, match=r"node 1 'Erf' \(Erf\): operator 'Erf' is not supported; supported: .*Gemm"):
        fl.from_onnx(tmp_path / "erf.onnx")
    (tmp_path / "junk.onnx").write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match="not a readable ONNX model|expected one graph input|no nodes"):
        fl.from_onnx(tmp_path / "junk.onnx")


def test_onnx_external_data_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    m = _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": rng.normal(size=(40, 40))}, [40])
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    with pytest.raises(ValueError, match="external data"):
        fl.from_onnx(tmp_path / "ext.onnx")


def test_onnx_torchvision_resnet_export(tmp_path):
    """torchvision's ResNet-18 exported by torch.onnx (its TorchScript exporter) loads as a graph;
    forward equals torch's, relevance equals the torch loader's (same weights)."""
    torch = pytest.importorskip("torch")
    from fastlrp.bench._util import import_torchvision

    try:
        tv = import_torchvision()
    except ImportError as exc:
        pytest.skip(f"torchvision's model code is not importable here: {exc}")
    torch.manual_seed(0)
    tm = tv.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    try:
        torch.onnx.export(tm, (x,), tmp_path / "r18.onnx", dynamo=False, opset_version=17)
    except Exception as exc:  # noqa: BLE001 - the exporter's own dependencies
        pytest.skip(f"torch.onnx.export is not usable here: {type(exc).__name__}: {exc}")
    model = fl.from_onnx(tmp_path / "r18.onnx")
    assert isinstance(model, fl.Model) and sum(isinstance(layer, fl.Add) for layer in model.layers) == 8
    with torch.no_grad():
        expected = tm(x).numpy()
    fwd_close(model(x.numpy()), expected)
    same_relevance(model, fl.from_torch(tm), x.numpy())
