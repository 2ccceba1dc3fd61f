"""Writes the Keras files that tests/test_io_keras.py reads, with real Keras 3.

Run with Keras 3 installed (any backend; the torch backend works with torch==2.13.0):

    KERAS_BACKEND=torch python tests/data/make_keras_fixtures.py

It saves each model as .keras and legacy .h5, plus keras_expected.npz: the NHWC inputs and the
outputs Keras computed for them (the expected values the tests compare fastlrp against).
"""

import os
import sys

import numpy as np


def models(keras):
    L = keras.layers
    mlp = keras.Sequential([keras.Input((10,)), L.Dense(16, activation="relu"), L.BatchNormalization(), L.Dropout(0.3),
                            L.Dense(8, activation="tanh"), L.Dense(3, activation="softmax")], name="mlp")
    cnn = keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(6, 3, padding="same", activation="relu"),
                            L.BatchNormalization(), L.MaxPooling2D(2), L.Conv2D(4, 3), L.Activation("relu"),
                            L.AveragePooling2D(2), L.Flatten(), L.Dropout(0.2), L.Dense(5, activation="relu"),
                            L.Dense(3), L.Softmax()], name="cnn")
    gap = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(4, 3, strides=2), L.LeakyReLU(negative_slope=0.1),
                            L.GlobalAveragePooling2D(), L.Dense(2, use_bias=False)], name="gap")
    # functional: a residual join, a concatenation, ZeroPadding2D before a conv and a max pool
    inp = keras.Input((10, 10, 3))
    h = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(4, 3)(L.ZeroPadding2D(1)(inp))))
    s = L.Conv2D(4, 1)(L.Conv2D(4, 3, padding="same", activation="relu")(h))
    a = L.ReLU()(L.Add()([h, s]))
    p = L.MaxPooling2D(3, strides=2)(L.ZeroPadding2D(1)(a))
    c = L.Concatenate()([p, L.Conv2D(2, 1, activation="relu")(p)])
    func = keras.Model(inp, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(c)), name="func")
    return {"mlp": mlp, "cnn": cnn, "gap": gap, "func": func}


def main(out_dir):
    import keras
    rng = np.random.default_rng(7)
    expected = {}
    for name, model in models(keras).items():
        for layer in model.layers:  # random statistics, so that folding BatchNorm is exercised
            if isinstance(layer, keras.layers.BatchNormalization):
                n = layer.get_weights()[0].shape[0]
                layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(size=n) * 0.1, rng.normal(size=n) * 0.1,
                                   rng.uniform(0.5, 2.0, n)])
        x = rng.normal(size=(5,) + tuple(model.input_shape[1:])).astype(np.float32)
        expected[f"{name}_x"] = x
        expected[f"{name}_y"] = np.asarray(model.predict(x, verbose=0))
        model.save(os.path.join(out_dir, f"keras_{name}.keras"))
        model.save(os.path.join(out_dir, f"keras_{name}.h5"))
    expected["keras_version"] = np.array(keras.__version__)
    np.savez(os.path.join(out_dir, "keras_expected.npz"), **expected)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
