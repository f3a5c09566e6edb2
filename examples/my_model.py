"""A user's own model for `epochpilot train examples/my_model.toml`: any function returning an nn.Module.

It receives ``n_features`` and ``n_outputs`` from the data (when it accepts them) and every other key of the
job file's [model] table as a keyword argument.
"""

from torch import nn


def wide_and_shallow(n_features: int, n_outputs: int, width: int = 256) -> nn.Module:
    """One wide hidden layer with batch norm."""
    return nn.Sequential(
        nn.Linear(n_features, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, n_outputs),
    )
