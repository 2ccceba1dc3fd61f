"""Sequential: forward, BatchNorm folding, dtypes, layouts, threads, determinism, bad input."""

import threading

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import reference, rules

from conftest import random_mlp


def test_forward_matches_numpy_every_activation(rng):
    acts = [fl.ReLU(), fl.LeakyReLU(0.2), fl.Tanh(), fl.Sigmoid(), fl.ELU(0.7), fl.SELU(), fl.Identity(),
            fl.Dropout(0.3), fl.Flatten()]
    layers = [fl.Dense(rng.normal(size=(6, 4)), rng.normal(size=6))]
    for a in acts:
        layers += [a, fl.Dense(rng.normal(size=(6, 6)) * 0.5, rng.normal(size=6))]
    for last in [fl.Softmax(), fl.LogSoftmax()]:
        model = fl.Sequential(layers + [last])
        x = rng.normal(size=(9, 4)) * 3
        np.testing.assert_allclose(model.forward(x), reference.forward(model.layers, x), rtol=1e-12, atol=1e-12)
        y32 = model.forward(x.astype(np.float32))
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, reference.forward(model.layers, x), rtol=1e-4, atol=1e-5)


def test_batchnorm_folding_keeps_forward_float64(rng):
    d1, bn = fl.Dense(rng.normal(size=(8, 5)), rng.normal(size=8)), fl.BatchNorm1d(
        rng.normal(size=8), rng.uniform(0.1, 2, size=8), rng.normal(size=8), rng.normal(size=8), eps=1e-3)
    unfolded = [d1, bn, fl.ReLU(), fl.Dense(rng.normal(size=(3, 8)))]
    model = fl.Sequential(unfolded)
    assert len(model.layers) == 3 and isinstance(model.layers[0], fl.Dense)
    x = rng.normal(size=(6, 5))
    np.testing.assert_allclose(model.forward(x), reference.forward(unfolded, x), rtol=1e-13, atol=1e-13)
    assert len(fl.fold_batchnorm(unfolded)) == 3


def test_unfoldable_batchnorm_is_epsilon_diagonal(rng):
    bn = fl.BatchNorm1d(rng.normal(size=5), rng.uniform(0.5, 2, size=5), rng.normal(size=5), rng.normal(size=5))
    model = fl.Sequential([bn, fl.Dense(rng.normal(size=(3, 5)))])
    assert isinstance(model.layers[0], fl.BatchNorm1d)  # nothing before it to fold into
    x = rng.normal(size=(4, 5))
    lrp = fl.LRP(model, rules.Epsilon(0.1))
    assert isinstance(lrp.rules[0], rules.Epsilon)
    e = lrp(x)
    ref = reference.lrp(model.layers, lrp.rules, x)[0]
    np.testing.assert_allclose(e.relevance, ref, rtol=1e-10)
    np.testing.assert_allclose(model.forward(x), reference.forward(model.layers, x), rtol=1e-12)


def test_input_dtypes(rng):
    model = random_mlp(rng, [4, 6, 2])
    x = rng.normal(size=(3, 4))
    lrp = fl.LRP(model, "epsilon_plus")
    assert lrp(x).relevance.dtype == np.float64
    assert lrp(x.astype(np.float32)).relevance.dtype == np.float32
    assert lrp(x.astype(np.float16)).relevance.dtype == np.float32
    xi = rng.integers(-3, 3, size=(3, 4))
    ri = lrp(xi).relevance
    assert ri.dtype == np.float32
    np.testing.assert_allclose(ri, lrp(xi.astype(np.float64)).relevance, rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="complex"):
        lrp(x.astype(np.complex128))
    with pytest.raises(TypeError):
        lrp(np.array([["a", "b", "c", "d"]]))


def test_noncontiguous_and_fortran_inputs(rng):
    model = random_mlp(rng, [5, 7, 3])
    lrp = fl.LRP(model, "epsilon_plus_flat")
    big = rng.normal(size=(10, 10))
    x_view = big[::2, 1::2]  # strided view, (5, 5)
    x_f = np.asfortranarray(big[:5, :5])
    for x in (x_view, x_f):
        assert not x.flags.c_contiguous
        ref = lrp(np.ascontiguousarray(x))
        got = lrp(x)
        np.testing.assert_array_equal(got.relevance, ref.relevance)
        np.testing.assert_array_equal(model.forward(x), model.forward(np.ascontiguousarray(x)))


def test_fortran_ordered_weights(rng):
    w = rng.normal(size=(4, 6))
    model = fl.Sequential([fl.Dense(np.asfortranarray(w)), fl.ReLU(), fl.Dense(rng.normal(size=(3, 4)).T.copy().T)])
    x = rng.normal(size=(2, 6))
    np.testing.assert_allclose(model.forward(x), reference.forward(model.layers, x), rtol=1e-12)
    np.testing.assert_allclose(fl.LRP(model, rules.ZPlus())(x.astype(np.float32)).relevance,
                               reference.lrp(model.layers, [rules.ZPlus(), rules.Pass(), rules.ZPlus()], x)[0],
                               rtol=1e-4, atol=1e-6)


def test_empty_batch(rng):
    model = random_mlp(rng, [5, 7, 3])
    e = fl.LRP(model, "epsilon_plus")(np.zeros((0, 5)), layerwise=True)
    assert e.relevance.shape == (0, 5) and e.output.shape == (0, 3)
    assert e.conservation.shape == (0, len(model.layers) + 1)
    assert [l.shape for l in e.layers] == [(0, 5), (0, 7), (0, 7), (0, 3), (0, 3)]
    assert model.forward(np.zeros((0, 5), dtype=np.float32)).shape == (0, 3)
    assert fl.LRP(model, "epsilon_plus")(np.zeros((0, 5)), target=np.zeros((0, 3))).relevance.shape == (0, 5)


def test_deterministic_and_thread_counts(rng):
    model = random_mlp(rng, [105, 512, 256, 128, 64, 2])
    x = rng.normal(size=(301, 105)).astype(np.float32)
    lrp = fl.LRP(model, "epsilon_plus_flat")
    fl.set_num_threads(2)
    a, b = lrp(x), lrp(x)
    np.testing.assert_array_equal(a.relevance, b.relevance)  # bitwise
    fl.set_num_threads(1)
    assert fl.get_num_threads() == 1
    c = lrp(x)
    np.testing.assert_array_equal(c.relevance, lrp(x).relevance)
    np.testing.assert_allclose(c.relevance, a.relevance, rtol=1e-4, atol=1e-6 * np.abs(a.relevance).max())


def test_python_threads_share_a_model(rng):
    model = random_mlp(rng, [30, 64, 32, 4])
    lrp = fl.LRP(model, "epsilon_alpha2_beta1")
    xs = [rng.normal(size=(50, 30)) for _ in range(8)]
    serial = [lrp(x).relevance for x in xs]
    results = [None] * 8

    def work(k):
        for _ in range(5):
            results[k] = lrp(xs[k]).relevance

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def test_set_num_threads_validation():
    with pytest.raises(ValueError):
        fl.set_num_threads(0)
    with pytest.raises(TypeError):
        fl.set_num_threads(1.5)
    fl.set_num_threads(None)
    assert fl.get_num_threads() == fl.build_info()["max_threads"]


# ---- bad input -------------------------------------------------------------------------


def test_layers_that_do_not_chain_name_both(rng):
    with pytest.raises(ValueError, match=r"layer 0 Dense\(4 -> 8\) gives 8 features but layer 2 Dense\(7 -> 3\) expects 7"):
        fl.Sequential([fl.Dense(np.ones((8, 4))), fl.ReLU(), fl.Dense(np.ones((3, 7)))])
    with pytest.raises(ValueError, match="BatchNorm1d"):
        fl.Sequential([fl.Dense(np.ones((8, 4))), fl.BatchNorm1d(np.zeros(5), np.ones(5))])


def test_bad_layers():
    with pytest.raises(TypeError, match="layer 1"):
        fl.Sequential([fl.Dense(np.ones((2, 2))), "relu"])
    with pytest.raises(ValueError, match="empty"):
        fl.Sequential([])
    with pytest.raises(ValueError, match="NaN or Inf"):
        fl.Dense(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        fl.Dense(np.ones((2, 2)), [0.0, np.inf])
    with pytest.raises(ValueError, match=r"expected shape \(2,\).*got \(3,\)"):
        fl.Dense(np.ones((2, 2)), np.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        fl.Dense(np.ones(3))
    with pytest.raises(ValueError, match="var"):
        fl.BatchNorm1d(np.zeros(2), -np.ones(2))


def test_bad_x(rng):
    model = random_mlp(rng, [5, 7, 3])
    lrp = fl.LRP(model, "epsilon_plus")
    with pytest.raises(ValueError, match=r"expected 5 features per sample, got shape \(2, 4\)"):
        lrp(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"2-D batch.*x\[None\]"):
        lrp(np.ones(5))
    with pytest.raises(ValueError, match="2-D"):
        model.forward(np.ones((2, 5, 1)))
    for bad in (np.nan, np.inf, -np.inf):
        x = np.ones((3, 5))
        x[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            lrp(x)
        with pytest.raises(ValueError, match="NaN or Inf"):
            model.forward(x.astype(np.float32))


def test_bad_x_found_at_every_position(rng):
    # The core's check runs in vectors with a scalar tail: a NaN or an infinity is found wherever
    # it sits (21 values: whole vectors and a tail at every ISA level, both dtypes).
    model = random_mlp(rng, [7, 4, 3])
    lrp = fl.LRP(model, "epsilon")
    for dtype in (np.float32, np.float64):
        for pos in range(21):
            for bad in (np.nan, np.inf, -np.inf):
                x = rng.normal(size=(3, 7)).astype(dtype)
                x.flat[pos] = bad
                with pytest.raises(ValueError, match="NaN or Inf"):
                    lrp(x)
                with pytest.raises(ValueError, match="NaN or Inf"):
                    model.forward(x)
        lrp(rng.normal(size=(3, 7)).astype(dtype))  # and finite input passes


def test_bad_targets(rng):
    model = random_mlp(rng, [5, 7, 3])
    lrp = fl.LRP(model, "epsilon_plus")
    x = np.ones((2, 5))
    for t, match in [(3, r"\[0, 3\)"), (-1, r"\[0, 3\)"), ([0, 5], r"\[0, 3\)"), ([0, 1, 2], "2 class indices"),
                     (np.ones((2, 4)), r"shape \(2, 3\)"), (np.ones((2, 3, 1)), "expected None"),
                     (np.array([0.5, 1.0]), "expected None")]:
        with pytest.raises(ValueError, match=match):
            lrp(x, target=t)
    with pytest.raises(TypeError, match="bool"):
        lrp(x, target=True)
    with pytest.raises(ValueError, match="NaN or Inf"):
        lrp(x, target=np.full((2, 3), np.nan))


def test_save_load_roundtrip(rng, tmp_path):
    layers = [fl.Dense(rng.normal(size=(6, 4)), rng.normal(size=6)), fl.LeakyReLU(0.3),
              fl.Dense(rng.normal(size=(5, 6))), fl.ELU(0.5), fl.Dropout(0.2), fl.Dense(rng.normal(size=(2, 5))),
              fl.Softmax()]
    model = fl.Sequential([fl.BatchNorm1d(rng.normal(size=4), rng.uniform(1, 2, size=4), eps=1e-3)] + layers)
    path = tmp_path / "m.npz"
    model.save(path)
    back = fl.load(path)
    assert [repr(l) for l in back.layers] == [repr(l) for l in model.layers]
    x = rng.normal(size=(3, 4))
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_load_refuses_bad_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.ones(3))
    with pytest.raises(ValueError, match="__config__"):
        fl.load(p)
    p2 = tmp_path / "junk.npz"
    p2.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError):
        fl.load(p2)
    p3 = tmp_path / "obj.npz"
    np.savez(p3, __config__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        fl.load(p3)


def test_chunked_explanation_equals_one_batch(rng, tmp_path, capsys):
    model = random_mlp(rng, [12, 16, 3])
    lrp = fl.LRP(model, "epsilon_plus_flat")
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(2500, 12))
    x[:] = rng.normal(size=(2500, 12))
    full = lrp(np.asarray(x))
    out = np.lib.format.open_memmap(tmp_path / "r.npy", mode="w+", dtype=np.float32, shape=(2500, 12))
    e = lrp(x, batch_size=700, out=out, progress=True)
    assert e.relevance is out

    def close(a, b):  # chunks split differently over threads: equal up to float32 rounding
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())

    close(np.asarray(out), full.relevance)
    close(e.output, full.output)
    np.testing.assert_array_equal(e.targets, full.targets)
    close(e.conservation, full.conservation)
    assert "2,500/2,500" in capsys.readouterr().err
    t = rng.integers(0, 3, size=2500)
    close(lrp(x, target=t, batch_size=999).relevance, lrp(np.asarray(x), target=t).relevance)
    lw = lrp(x[:50], layerwise=True, batch_size=7)
    close(lw.layers[1], lrp(np.asarray(x[:50]), layerwise=True).layers[1])
    with pytest.raises(ValueError, match="batch_size"):
        lrp(x, batch_size=0)
    with pytest.raises(ValueError, match="out"):
        lrp(x, batch_size=10, out=np.empty((3, 12), np.float32))


@pytest.mark.parametrize("name", ["epsilon_plus", "epsilon_alpha2_beta1", "w2_epsilon", "epsilon_plus_flat"])
def test_extreme_magnitudes_never_give_nan(name, rng):
    model = random_mlp(rng, [6, 8, 3], dtype=np.float32)
    lrp = fl.LRP(model, name)
    for scale in (1e-30, 1e-38, 1e20, 1e30):  # tiny (down to subnormal) and huge but representable
        e = lrp((rng.normal(size=(4, 6)) * scale).astype(np.float32))
        assert np.isfinite(e.relevance).all() and np.isfinite(e.output).all(), scale
    zero = lrp(np.zeros((2, 6), np.float32))
    assert np.isfinite(zero.relevance).all()
    with pytest.raises(ValueError, match="overflowed float32"):
        lrp(np.full((2, 6), 3e38, np.float32))  # finite, but the forward pass overflows float32


def test_memory_error_before_allocating(rng, monkeypatch):
    """A batch whose workspace exceeds the available memory fails up front, naming the layer and
    the size, and suggests a batch size that fits (with which it then works)."""
    import fastlrp._checks as checks
    from fastlrp.toolbox import modules

    model = fl.Sequential([fl.Dense(rng.normal(size=(4096, 8)).astype(np.float32)), fl.ReLU(),
                           fl.Dense(rng.normal(size=(2, 4096)).astype(np.float32))])
    x = rng.normal(size=(5000, 8)).astype(np.float32)
    monkeypatch.setattr(checks, "available_memory", lambda: 64 * 2**20)
    with pytest.raises(MemoryError, match=r"explaining 5,000 samples needs about .* GiB .*layer 0 Dense\(8 -> 4096\).*"
                                          r"more than the 0.1 GiB available: pass batch_size="):
        fl.LRP(model, "epsilon_plus_flat")(x)
    with pytest.raises(MemoryError, match="batch_size"):
        model.forward(x)
    e = fl.LRP(model, "epsilon_plus_flat")(x, batch_size=500)  # chunks fit
    assert e.relevance.shape == x.shape and np.isfinite(e.relevance).all()
    tb = modules.Sequential([modules.Linear(8, 4096), modules.Rect(), modules.Linear(4096, 2)])
    with pytest.raises(MemoryError, match="layer 0"):
        tb.forward(x.astype(np.float64))
