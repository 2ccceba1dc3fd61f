"""Coverage-guided fuzzing of fastlrp's model readers with atheris (pip install atheris).

    python fuzz/fuzz_readers.py READER [seconds] [-- libFuzzer options]
    python fuzz/fuzz_readers.py all 120          # every reader, 120 s each, a summary at the end

READER: toolbox-txt, toolbox-nn, native-npz, keras, keras-h5, onnx. Each run starts from a valid
seed file (written here, or tests/data's Keras 3 files) and lets libFuzzer mutate it. The
property: reading any input either returns a model or raises ValueError (the documented
exception) -- any other exception, a crash, a hang (-timeout) or a huge allocation
(-rss_limit_mb) is a finding. docs/reliability.md records the last run.
"""

import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
READERS = {"toolbox-txt": ".txt", "toolbox-nn": ".nn", "native-npz": ".npz", "keras": ".keras", "keras-h5": ".h5",
           "onnx": ".onnx"}


def seed_bytes(reader: str) -> bytes:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from test_fuzz_readers import _seed_files  # the same seeds as the test suite's short run

    with tempfile.TemporaryDirectory() as d:
        files = _seed_files(d)
    name = {"toolbox-txt": "m.txt", "toolbox-nn": "m.nn", "native-npz": "m.npz", "keras": "keras_cnn.keras",
            "keras-h5": "keras_mlp.h5", "onnx": "m.onnx"}[reader]
    return files[name]


def run_one(reader: str, args):
    import atheris

    with atheris.instrument_imports():
        import fastlrp as fl
        from fastlrp.toolbox import model_io
    def keras(p):  # HDF5 is parsed in a child process; a hang there ends at this limit as a ValueError
        return fl.from_keras(p, timeout=5)

    read = {".txt": model_io.read, ".nn": model_io.read, ".npz": fl.load, ".keras": keras, ".h5": keras,
            ".onnx": fl.from_onnx}[READERS[reader]]
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "input" + READERS[reader])
    corpus = os.path.join(tmp, "corpus")
    os.makedirs(corpus)
    with open(os.path.join(corpus, "seed"), "wb") as f:
        f.write(seed_bytes(reader))

    def target(data: bytes):
        with open(path, "wb") as f:
            f.write(data)
        try:
            read(path)
        except ValueError:
            pass

    atheris.Setup([sys.argv[0], corpus, *args], target)
    atheris.Fuzz()


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in (*READERS, "all"):
        print(__doc__)
        return 2
    reader, seconds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 60
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    limits = [f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=4096", "-max_len=200000"] + extra
    if reader != "all":
        run_one(reader, limits)
        return 0
    summary = []
    for r in READERS:  # one process per reader: a finding in one does not stop the others
        t0 = time.time()
        p = subprocess.run([sys.executable, __file__, r, str(seconds), *(["--", *extra] if extra else [])],
                           capture_output=True, text=True)
        runs = [line for line in p.stderr.splitlines() if line.startswith("Done ") or "#" in line and "DONE" in line]
        summary.append(f"{r}: exit {p.returncode}, {time.time() - t0:.0f} s, {runs[-1] if runs else p.stderr[-300:]}")
        print(summary[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
