"""Peak memory of a first explanation: a model keeps the forms of its rules' weights that its calls
use, not every form a rule could need (docs/reliability.md, "Memory").

Each case runs in a fresh process (the peak of a process that ran other tests hides new
allocations in memory it freed before). The model is three 384-channel 3x3 convolutions on a
4x4 image, so its weights (15 MiB) dominate every other allocation. Its inputs are
non-negative, as they are after a ReLU. The bounds count the copies a convolution needs under
each rule, plus 2.5 weights for the temporaries of the layer being prepared and the buffers:
- every rule: the weight in the core's (ky, kx, c) order and its transpose for the forward (2);
- Epsilon adds its gather weight (3 in all);
- ZPlus and Gamma add (W+)^T and the gather form of U (4);
- AlphaBeta with beta != 0 adds [U; V]^T and the gather form of [U; V], two weights each (6).
Measured here (AVX2 machine) with the code from before the forms were made on first use:
3.0 (Epsilon), 13.7 (ZPlus), 18.0 (Gamma) and 18.0 (AlphaBeta) weights; after: 3.0, 5.0, 5.0, 7.7.
"""

import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
import numpy as np
import fastlrp as fl
from fastlrp import composites, rules
from fastlrp.bench.suite import peak_growth

rng = np.random.default_rng(0)
C = 384
layers = []
for _ in range(3):
    w = (rng.normal(size=(C, C, 3, 3)) * 0.02).astype(np.float32)
    layers += [fl.Conv2d(w, np.zeros(C, np.float32), padding=1), fl.ReLU()]
dense = (rng.normal(size=(10, C * 16)) * 0.01).astype(np.float32)
model = fl.Sequential(layers + [fl.Flatten(), fl.Dense(dense, np.zeros(10, np.float32))])
rule = {"epsilon": rules.Epsilon(1e-6), "zplus": rules.ZPlus(), "gamma": rules.Gamma(0.25),
        "alpha2_beta1": rules.AlphaBeta(2, 1)}[sys.argv[1]]
lrp = fl.LRP(model, composites.from_rule(rule))
x = rng.uniform(0, 1, size=(2, C, 4, 4)).astype(np.float32)
growth = peak_growth(lambda: lrp(x))
print("none" if growth is None else growth * 2**20 / (3 * C * C * 9 * 4))
"""

BOUNDS = {"epsilon": 3 + 2.5, "zplus": 4 + 2.5, "gamma": 4 + 2.5, "alpha2_beta1": 6 + 2.5}


@pytest.mark.parametrize("rule", list(BOUNDS))
def test_first_explanation_keeps_only_the_weight_forms_it_uses(rule):
    out = subprocess.run([sys.executable, "-c", SCRIPT, rule], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    value = out.stdout.strip().splitlines()[-1]
    if value == "none":
        pytest.skip("this system does not report the peak resident memory (/proc/self/clear_refs)")
    weights = float(value)
    assert weights <= BOUNDS[rule], f"{rule}: peak growth {weights:.2f} x the weights, bound {BOUNDS[rule]}"
