"""A Keras time-series classifier whose early stopping and best-model checkpoint are swapped for epochpilot.

Before, the usual callbacks::

    callbacks = [
        keras.callbacks.EarlyStopping("val_loss", patience=10, restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint("best_model.keras", monitor="val_loss", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=5, min_lr=1e-4),
    ]

After, one callback does the first two (``EpochPilot()`` with no policy is epochpilot.fit's default: patience
10 on val_loss), prints one line when it stops, keeps the best epoch's weights whether or not it stopped, and
writes a run directory: ``history.csv``, ``summary.json``, ``report.html`` and the kept model as
``model.keras``. Keras' own ``ReduceLROnPlateau`` stays: the adapter works beside it.

Data: noisy sine and square waves of random frequency and phase, 64 steps each, 10% of the labels flipped
(generated here: nothing is downloaded).

    python examples/keras_example.py          # 1,000 series, up to 60 epochs: under a minute on a CPU
    python examples/keras_example.py --tiny   # 200 series, 4 epochs (the tests run this)
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from epochpilot.integrations.keras import EpochPilot

TINY = "--tiny" in sys.argv or os.environ.get("EPOCHPILOT_EXAMPLE_TINY") == "1"
N, EPOCHS = (200, 4) if TINY else (1000, 60)
RUN_DIR = "runs/keras-example"


def waves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` series of shape (64, 1): label 0 a sine, label 1 a square wave; noise and 10% flipped labels."""
    rng = np.random.default_rng(seed)
    t = np.arange(64)
    freq = rng.uniform(0.05, 0.2, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    labels = rng.integers(0, 2, size=n)
    sine = np.sin(2 * np.pi * freq * t + phase)
    series = np.where(labels[:, None] == 1, np.sign(sine), sine) + rng.normal(0, 0.8, size=(n, 64))
    flip = rng.random(n) < 0.1
    return series[..., None].astype("float32"), np.where(flip, 1 - labels, labels).astype("int32")


keras.utils.set_random_seed(0)
x, y = waves(N, seed=0)
x_test, y_test = waves(N // 4, seed=1)
model = keras.Sequential(
    [
        keras.Input((64, 1)),
        keras.layers.Conv1D(32, 5, activation="relu"),
        keras.layers.Conv1D(32, 5, activation="relu"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=3e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
callbacks = [
    EpochPilot(
        run_dir=RUN_DIR
    ),  # stops, keeps the best epoch, writes RUN_DIR (model.keras included)
    keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=5, min_lr=1e-4),
]
model.fit(x, y, validation_split=0.2, epochs=EPOCHS, batch_size=32, callbacks=callbacks, verbose=0)

pilot = callbacks[0]
kept = keras.saving.load_model(f"{RUN_DIR}/model.keras")  # the kept model, as Keras saves it
_, accuracy = kept.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy of the kept model (epoch {pilot.best_epoch_}): {accuracy:.3f}")
print(f"report: {RUN_DIR}/report.html")
