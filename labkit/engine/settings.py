"""The checks every setting of the kit runs on its value (the settings dataclasses, the networks, the loop),
so that a wrong value fails at once with a message that names it and says what it must be.

Where labkit runs (the device, Colab or Kaggle, smoke mode, the data and runs folders) is
``labkit.engine.environment``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # ``labkit.engine.training.Precision``; auto: mixed on a CUDA GPU


def whole_number(name: str, value, low: int = 1) -> int:
    """``value`` if it is a whole number >= ``low`` (not a float, not a bool); otherwise an error naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


def number(
    name: str,
    value,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    what: str = "",
) -> float:
    """``value`` as a float if it is a finite number within the bounds; otherwise an error naming
    ``name`` and saying ``what`` it must be (by default, the bounds)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
    ok = ok and (at_most is None or value <= at_most)
    if not ok:
        bounds = [
            f"> {above:g}" if above is not None else "",
            f">= {at_least:g}" if at_least is not None else "",
            f"<= {at_most:g}" if at_most is not None else "",
        ]
        what = what or "a number " + " and ".join(b for b in bounds if b)
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def learning_rate(name: str, value) -> float:
    """A learning rate: a finite number > 0."""
    return number(name, value, above=0, what="a positive number such as 1e-3")


def one_of(name: str, value: T, choices: Iterable[T], hint: str = "") -> T:
    """``value`` if it is one of ``choices``; otherwise an error listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(str, choices))}{f' ({hint})' if hint else ''}, got {value!r}"
        )
    return value


@dataclass
class RunSettings:
    """What the settings of every model share (each family's recipe declares its own, ``labkit.engine.family``):
    the seed, the precision (``PRECISIONS``), whether to compile the modules, and the dataset and image size to
    train on; and the checks of the three fields each model declares with its own defaults, ``epochs``,
    ``batch_size`` and ``lr``. A model's settings declare those and their own fields, call
    ``super().__post_init__()``, and check ``dataset`` against what their network can take
    (``labkit.datasets.check_dataset``)."""

    seed: int = 0
    precision: str = "auto"
    compile: bool = False
    dataset: str = "mnist"
    image_size: int | None = None

    def __post_init__(self):
        whole_number("epochs", self.epochs, low=0)
        whole_number("batch_size", self.batch_size)
        learning_rate("lr", self.lr)
        one_of("precision", self.precision, PRECISIONS)

    def fresh_training(self, device="cpu"):
        """A fresh, untrained training of this model on ``device``, built as its recipe builds it: what
        ``grade``, ``doctor`` and notebook 04 make from settings alone. Most settings build it with
        ``training(device)``; the GANs', whose ``training`` takes the networks, build those first."""
        return self.training(device)
