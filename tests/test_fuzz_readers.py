"""Property-based fuzzing of every model reader: truncated, mutated and hostile files give a
ValueError (the documented exception) in bounded time, never a crash, a hang, another
exception or a huge allocation. The coverage-guided run is fuzz/fuzz_readers.py (atheris)."""

import io
import os
import pickle
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlrp as fl
from fastlrp.toolbox import model_io, modules

DATA = os.path.join(os.path.dirname(__file__), "data")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _seed_files(tmp):
    """One valid file per reader, written here (Keras files: written by Keras 3, in tests/data)."""
    rng = np.random.default_rng(0)
    net = modules.Sequential([modules.Convolution((3, 3, 1, 2), (1, 1)), modules.Rect(), modules.SumPool((2, 2), (2, 2)),
                              modules.Flatten(), modules.Linear(8, 3), modules.Tanh(), modules.Linear(3, 2)])
    for m in net.modules:
        if hasattr(m, "W"):
            m.W = rng.normal(size=m.W.shape)
    files = {}
    model_io.write(net, os.path.join(tmp, "m.txt"))
    model_io.write(net, os.path.join(tmp, "m.nn"))
    fl.Sequential([fl.Conv2d(rng.normal(size=(2, 1, 3, 3)).astype(np.float32)), fl.ReLU(), fl.Flatten(),
                   fl.Dense(rng.normal(size=(2, 8)).astype(np.float32))]).save(os.path.join(tmp, "m.npz"))
    for name in ("m.txt", "m.nn", "m.npz"):
        files[name] = open(os.path.join(tmp, name), "rb").read()
    for name in ("keras_cnn.keras", "keras_mlp.h5"):
        files[name] = open(os.path.join(DATA, name), "rb").read()
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
                               helper.make_node("Relu", ["h"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
                              [numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "w"),
                               numpy_helper.from_array(np.zeros(3, np.float32), "b")])
        files["m.onnx"] = onnx.helper.make_model(g).SerializeToString()
    except ImportError:
        pass
    return files


def _reader(name):
    ext = os.path.splitext(name)[1]
    def keras(p):  # a short limit for the child process that parses HDF5 (default 60 s)
        return fl.from_keras(p, timeout=5)

    return {".txt": model_io.read, ".nn": model_io.read, ".npz": fl.load, ".keras": keras, ".h5": keras,
            ".onnx": fl.from_onnx}[ext]


_SEEDS = {}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    class Seeds(dict):  # a short repr in hypothesis's failure reports
        def __repr__(self):
            return f"<seed files {sorted(self)}>"

    if not _SEEDS:
        _SEEDS.update(_seed_files(str(tmp_path_factory.mktemp("seeds"))))
    return Seeds(_SEEDS)


def _check(tmp_path, name, data, seeds_ok=False):
    p = tmp_path / name
    p.write_bytes(data)
    t0 = time.perf_counter()
    try:
        _reader(name)(p)
    except ValueError:
        pass
    except ImportError:
        pytest.skip("the reader's optional dependency is missing")
    assert time.perf_counter() - t0 < 10, f"{name}: reading took {time.perf_counter() - t0:.1f} s"


READERS = ["m.txt", "m.nn", "m.npz", "keras_cnn.keras", "keras_mlp.h5", "m.onnx"]


@pytest.mark.parametrize("name", READERS)
def test_seed_files_load(seeds, tmp_path, name):
    if name not in seeds:
        pytest.skip("onnx is not installed")
    p = tmp_path / name
    p.write_bytes(seeds[name])
    assert _reader(name)(p) is not None


@pytest.mark.parametrize("name", READERS)
@SETTINGS
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
       k=st.integers(0, 2))
def test_mutated_files_give_value_errors(seeds, tmp_path, name, cut, flips, k):
    if name.startswith("keras") and k:  # each Keras read starts a child process: a third of the examples
        return
    if name not in seeds:
        pytest.skip("onnx is not installed")
    data = bytearray(seeds[name])
    for where, byte in flips:
        data[min(int(where * len(data)), len(data) - 1)] = byte
    data = bytes(data[: max(1, int(len(data) * cut))]) if cut < 0.999 else bytes(data)
    _check(tmp_path, name, data)


@SETTINGS
@given(lines=st.lists(st.one_of(
    st.sampled_from(["Linear 2 3", "Linear 1000000 1000000", "Convolution 3 3 1 2 1 1", "SumPool 2 2 2 2",
                     "MaxPool 9 9 1 1", "Flatten", "Rect", "Tanh", "SoftMax", "Linear 0 3", "Linear -1 2",
                     "Convolution 999999 999999 999999 999999 1 1", "1 2 3 4 5 6", "0.5 nan inf", "1e400 -1e400",
                     "", " ", "\r", "Linear 2 3 4", "Linear a b"]),
    st.text(alphabet="0123456789.-e +", max_size=30)), max_size=12))
def test_hostile_text_models(tmp_path, lines):
    _check(tmp_path, "m.txt", ("\n".join(lines) + "\n").encode())


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@SETTINGS
@given(obj=st.recursive(st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5), st.just(_Evil()),
                                  st.just(np.zeros(3)), st.just(np.array([object()], dtype=object))),
                        lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=3), c, max_size=3)),
                        max_leaves=8),
       protocol=st.integers(0, 5))
def test_hostile_pickles(tmp_path, obj, protocol):
    _check(tmp_path, "m.nn", pickle.dumps(obj, protocol=protocol))


@SETTINGS
@given(size=st.integers(10**9, 10**13))
def test_zip_member_claiming_a_huge_size_is_refused(tmp_path, size):
    """A .keras whose weights member claims more than the limit is refused before it is read."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
        z.writestr("model.weights.h5", b"\0" * 16)
    data = bytearray(buf.getvalue())
    # patch the central directory's uncompressed size of the second member
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = min(size, 2**32 - 1).to_bytes(4, "little")
    p = tmp_path / "bomb.keras"
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        fl.from_keras(p)


@pytest.mark.parametrize("name", ["hang-keras-h5-vlen-attribute.h5", "crash-npz-tokenize.npz",
                                  "crash-keras-zipversion.keras", "crash-onnx-no-output.onnx",
                                  "oom-nn-memo-index.nn", "crash-nn-dtype-setstate.nn"])
def test_fuzzer_findings_stay_fixed(name):
    """Inputs atheris found (fuzz/fuzz_readers.py): an .h5 on which the HDF5 library spins for
    minutes (parsed in a child process with a time limit, here 5 s), a TokenError from a .npy header, zipfile's
    NotImplementedError, an ONNX node without outputs, a pickle memo index of 605 million (4.8 GB
    memo table in the C unpickler), a numpy dtype state that makes numpy raise SystemError. Each is
    now a ValueError, in milliseconds."""
    p = os.path.join(DATA, "fuzz", name)
    pytest.importorskip("onnx") if name.endswith(".onnx") else None
    t0 = time.perf_counter()
    with pytest.raises(ValueError):
        _reader(name)(p)
    assert time.perf_counter() - t0 < 8
