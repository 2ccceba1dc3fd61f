"""fastlrp.dask on a real distributed LocalCluster (worker processes): results bit-for-bit equal
to one process with one thread, a killed worker recomputed, bad input refused before any task,
memory flat in N, and the CLI's zarr path."""

import os
import pickle
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
zarr = pytest.importorskip("zarr", reason="the dask extra is not installed")

import dask  # noqa: E402

import fastlrp as fl  # noqa: E402
from fastlrp.bench.nets import build, lenet_spec  # noqa: E402
from fastlrp.datasets import adult_rows, load_income_model  # noqa: E402

from conftest import random_mlp  # noqa: E402


def _cluster(**kw):
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                    silence_logs=50, **kw)


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, distributed.Client(cluster) as c:
        yield c


def _models(dtype):
    rng = np.random.default_rng(7)
    dense = random_mlp(rng, [20, 32, 16, 5], dtype=dtype)
    conv, _ = build(lenet_spec()[0], seed=3, dtype=dtype)
    return {"dense": (dense, (20,)), "conv": (conv, (1, 28, 28))}


def _serial(lrp, x, target=None, layerwise=False):
    """The single-process, one-thread answer the cluster must equal bit for bit."""
    fl.set_num_threads(1)
    try:
        return lrp(x, target=target, layerwise=layerwise)
    finally:
        fl.set_num_threads(None)


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_cluster_equals_one_process_bitwise(client, kind, dtype):
    model, sample = _models(dtype)[kind]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(53,) + sample).astype(dtype)
    x[:, ..., :3] = -1.0  # constant regions: ties must stay ties on the workers too
    lrp = fl.LRP(model, "epsilon_plus_flat")
    want = _serial(lrp, x, layerwise=True)
    xd = da.from_array(x, chunks=(10,) + sample)  # uneven last chunk: 10, 10, 10, 10, 10, 3
    e = fl.dask.explain(lrp, xd, layerwise=True)
    assert isinstance(e.relevance, da.Array) and e.relevance.chunks[0] == (10, 10, 10, 10, 10, 3)
    got = e.compute()
    assert _same(got.relevance, want.relevance)
    assert _same(got.output, want.output)
    assert _same(got.targets, want.targets)
    assert _same(got.conservation, want.conservation)
    assert len(got.layers) == len(want.layers)
    for a, b in zip(got.layers, want.layers):
        assert _same(a, b)
    # the fields computed one by one are the same arrays
    assert _same(e.relevance.compute(), want.relevance)


def test_cluster_graph_model_and_targets(client):
    rng = np.random.default_rng(2)
    inp = fl.Input((6,))
    h = fl.ReLU()(fl.Dense(rng.normal(size=(6, 6)), rng.normal(size=6) * 0.1)(inp))
    out = fl.Dense(rng.normal(size=(3, 6)), np.zeros(3))(fl.Add()(h, inp))
    lrp = fl.LRP(fl.Model(inp, out), "epsilon")
    x = rng.normal(size=(41, 6))
    classes = rng.integers(0, 3, size=41)
    start = rng.normal(size=(41, 3))
    xd = da.from_array(x, chunks=9)
    for target in (None, 2, classes, da.from_array(classes, chunks=5), start):
        plain = target.compute() if isinstance(target, da.Array) else target
        want = _serial(lrp, x, target=plain, layerwise=True)
        got = fl.dask.explain(lrp, xd, target=target, layerwise=True).compute()
        assert _same(got.relevance, want.relevance)
        assert (got.targets is None) == (want.targets is None)
        if want.targets is not None:
            assert _same(got.targets, want.targets)
        assert set(got.layers) == set(want.layers)
        assert all(_same(got.layers[k], want.layers[k]) for k in want.layers)


def test_tasks_use_the_workers_threads(client):
    model, sample = _models(np.float32)["dense"]
    client.run(fl.set_num_threads, None)  # every worker at the default: all the host's cores
    assert set(client.run(fl.get_num_threads).values()) == {fl.get_num_threads()}
    x = da.from_array(np.ones((80,) + sample, np.float32), chunks=(10,) + sample)
    kept = client.persist(fl.dask.explain(fl.LRP(model), x).relevance)
    distributed.wait(kept)
    ran = {w for holders in client.who_has(kept).values() for w in holders}
    assert ran
    # the workers that ran tasks now use 1 thread (threads_per_worker=1), not the host's cores
    assert set(client.run(fl.get_num_threads, workers=list(ran)).values()) == {1}
    assert client.submit(fl.dask.worker_threads, pure=False).result() == 1
    assert fl.dask.worker_threads() is None  # not in a worker here
    del kept


def test_model_enters_the_graph_once():
    rng = np.random.default_rng(0)
    big = random_mlp(rng, [200, 1000, 10], dtype=np.float64)  # 1.6 MB of weights
    lrp = fl.LRP(big)
    size = len(pickle.dumps(big))
    x = rng.normal(size=(600, 200))
    graphs = {}
    for chunks in (300, 6):  # 2 chunks, then 100
        e = fl.dask.explain(lrp, da.from_array(x, chunks=(chunks, 200)))
        g = dict(e.relevance.__dask_graph__())
        graphs[chunks] = g
        assert sum(1 for k in g if str(k).startswith("fastlrp-lrp-")) == 1
    import cloudpickle

    grow = len(cloudpickle.dumps(graphs[6])) - len(cloudpickle.dumps(graphs[300]))
    # 98 more chunks add their slices of x (98 * 6 * 200 * 8 bytes) and small tasks, not 98 models
    assert grow < 98 * 6 * 200 * 8 + 98 * 4000 < 2 * size


def test_pickles_through_npz_bytes():
    model, sample = _models(np.float64)["conv"]
    lrp = fl.LRP(model, fl.composites.epsilon_gamma_box(-3, 3))
    x = np.random.default_rng(0).normal(size=(3,) + sample)
    want = lrp(x).relevance
    back = pickle.loads(pickle.dumps(lrp))
    assert repr(back) == repr(lrp)
    assert _same(back(x).relevance, want)
    # no pickled Python objects inside: the model part is an .npz, read with allow_pickle=False
    fn, (data,) = model.__reduce__()
    assert data[:2] == b"PK" and fn is fl.model.from_bytes
    with pytest.raises(ValueError, match="model bytes"):
        fl.model.from_bytes(b"PK not a zip")


def test_bad_input_refused_before_any_task():
    model, sample = _models(np.float32)["conv"]
    lrp = fl.LRP(model)
    calls = []
    with dask.config.set(scheduler=lambda dsk, keys, **kw: calls.append(1)):
        with pytest.raises(ValueError, match="real numbers"):
            fl.dask.explain(lrp, da.from_array(np.array([["a"] * 784] * 4)).reshape(4, 1, 28, 28))
        with pytest.raises(ValueError, match="28"):
            fl.dask.explain(lrp, da.zeros((4, 1, 27, 28), chunks=(2, 1, 27, 28)))
        with pytest.raises(ValueError, match="one entry per sample"):
            fl.dask.explain(lrp, da.zeros((4, 1, 28, 28), chunks=(2, 1, 28, 28)), target=np.zeros(3, int))
        with pytest.raises(ValueError, match="class index"):
            fl.dask.explain(lrp, da.zeros((4, 1, 28, 28), chunks=(2, 1, 28, 28)), target=10)
        with pytest.raises(ValueError, match=r"\[0, 10\)"):
            fl.dask.explain(lrp, da.zeros((4, 1, 28, 28), chunks=(2, 1, 28, 28)), target=np.array([0, 1, 2, 11]))
        with pytest.raises(TypeError, match="fastlrp.LRP"):
            fl.dask.explain(model, da.zeros((4, 1, 28, 28), chunks=(2, 1, 28, 28)))
        with pytest.warns(UserWarning, match="rechunked to whole samples"):
            e = fl.dask.explain(lrp, da.zeros((4, 1, 28, 28), chunks=(2, 1, 14, 28)))
    assert calls == []  # nothing was scheduled
    assert e.relevance.chunks == ((2, 2), (1,), (28,), (28,))


def _pids(client):
    return client.run(os.getpid)


def test_killed_worker_is_recomputed():
    model, sample = _models(np.float32)["conv"]
    lrp = fl.LRP(model, "epsilon_plus_flat")
    x = np.random.default_rng(5).normal(size=(960,) + sample).astype(np.float32)
    want = _serial(lrp, x)
    with _cluster() as cluster, distributed.Client(cluster) as client:
        e = fl.dask.explain(lrp, da.from_array(x, chunks=(8,) + sample))  # 120 tasks
        fut = client.compute(e.relevance)
        pids = _pids(client)
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy and not fut.done():
                victim = busy[0]
            time.sleep(0.01)
        assert victim is not None, "no worker was ever busy: the computation was too short to interrupt"
        os.kill(pids[victim], signal.SIGKILL)
        got = fut.result(timeout=120)
        assert victim not in _pids(client) or _pids(client)[victim] != pids[victim]  # it really died
    assert _same(got, want.relevance)


def _peak_rss(n_rows, tmp_path, chunk=25_000):
    """Peak RSS of each worker (MiB) while 2 workers explain n Adult rows into a zarr store, and
    the bytes this (client and scheduler) process allocated meanwhile."""
    model, _, _ = load_income_model()
    lrp = fl.LRP(model, "epsilon")
    starts = list(range(0, n_rows, chunk))
    parts = [da.from_delayed(dask.delayed(adult_rows)(s, min(n_rows, s + chunk)), shape=(min(n_rows, s + chunk) - s, 108),
                             dtype=np.float32) for s in starts]
    x = da.concatenate(parts)
    with _cluster() as cluster, distributed.Client(cluster) as client:
        tracemalloc.start()
        e = fl.dask.explain(lrp, x)
        e.to_zarr(str(tmp_path / f"rel{n_rows}.zarr"))
        _, client_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks = client.run(fl.dask.peak_rss_mib)
        left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    stored = zarr.open_group(str(tmp_path / f"rel{n_rows}.zarr"), mode="r")
    return max(peaks.values()), client_peak, left, stored


def test_memory_flat_in_n(tmp_path):
    small, _, _, _ = _peak_rss(100_000, tmp_path)
    large, client_peak, left, stored = _peak_rss(1_000_000, tmp_path)
    rel_bytes = 1_000_000 * 108 * 4
    print(f"worker peak RSS: {small:.0f} MiB at 1e5 rows, {large:.0f} MiB at 1e6 rows; "
          f"client+scheduler allocated {client_peak / 2**20:.1f} MiB")
    # ten times the rows, one chunk's worth of memory per worker: the peak may not follow N
    # (the relevance alone is 412 MiB at 1e6 rows)
    assert large < small + 64
    assert client_peak < rel_bytes / 20  # no relevance array passed through this process
    assert left == 0  # the scheduler keeps nothing once the store is done
    rel = stored["relevance"]
    assert rel.shape == (1_000_000, 108)
    model, _, _ = load_income_model()
    lrp = fl.LRP(model, "epsilon")
    for s in (0, 48_842 * 7 + 11, 999_990):  # spot checks against one process
        want = _serial(lrp, adult_rows(s, s + 10))
        assert _same(rel[s:s + 10], want.relevance)


def _write_zarr(path, x, chunks):
    z = zarr.open_array(str(path), mode="w", shape=x.shape, chunks=chunks, dtype=x.dtype)
    z[:] = x


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastlrp", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_explains_a_zarr(tmp_path):
    model, sample = _models(np.float32)["dense"]
    model.save(tmp_path / "m.npz")
    x = np.random.default_rng(3).normal(size=(70,) + sample).astype(np.float32)
    _write_zarr(tmp_path / "x.zarr", x, chunks=(16,) + sample)
    r = _cli("explain", "m.npz", "x.zarr", "--out", "out.zarr", "--composite", "epsilon", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    want = _serial(fl.LRP(model, "epsilon"), x)
    got = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert _same(got["relevance"][:], want.relevance)
    assert _same(got["output"][:], want.output)
    assert _same(got["targets"][:], want.targets)
    # a directory of .npy chunks
    (tmp_path / "chunks").mkdir()
    for k, s in enumerate(range(0, 70, 25)):
        np.save(tmp_path / "chunks" / f"part{k:03d}.npy", x[s:s + 25])
    r = _cli("explain", "m.npz", "chunks", "--out", "out2.zarr", "--composite", "epsilon", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _same(zarr.open_group(str(tmp_path / "out2.zarr"), mode="r")["relevance"][:], want.relevance)


def test_cli_unreachable_scheduler(tmp_path):
    model, sample = _models(np.float32)["dense"]
    model.save(tmp_path / "m.npz")
    _write_zarr(tmp_path / "x.zarr", np.zeros((4,) + sample, np.float32), chunks=(2,) + sample)
    r = _cli("explain", "m.npz", "x.zarr", "--out", "o.zarr", "--scheduler", "tcp://127.0.0.1:9", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "scheduler" in lines[0] and "127.0.0.1:9" in lines[0], r.stderr
