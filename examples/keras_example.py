"""epochpilot inside Keras' fit: stop with a policy, warm up + cosine lr per batch, restore the best weights,
write a run directory that ``epochpilot report`` reads. Runs in seconds on CPU.

    KERAS_BACKEND=torch python examples/keras_example.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from epochpilot.integrations.keras import EpochPilot
from epochpilot.schedules import cosine_with_warmup
from epochpilot.stopping import EarlyStopping

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, 0] + 0.8 * rng.normal(size=256) > 0).astype("int32")

model = keras.Sequential(
    [keras.Input((8,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2)]
)
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=0.01),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
epochs, batch_size = 40, 32
steps = epochs * int(np.ceil(192 / batch_size))
pilot = EpochPilot(
    EarlyStopping("val_loss", mode="min", patience=3),
    schedule=cosine_with_warmup(0.01, warmup_steps=12, total_steps=steps),
    run_dir="runs/keras-example",
)
model.fit(
    x, y, validation_split=0.25, epochs=epochs, batch_size=batch_size, callbacks=[pilot], verbose=0
)
print(pilot.summary_["stop_message"])
print(f"best epoch {pilot.best_epoch_}: val_loss {pilot.best_value_:.4f} (weights restored)")
print("report: runs/keras-example/report.html")
