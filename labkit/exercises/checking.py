"""The checking every exercise shares: run a student's function on a few random cases, compare it with labkit's
answer, and say in words what is right or what differs (``Verdict``), naming the usual mistakes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

CASES = 5  # random cases per check


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``status`` is "correct", "not done" or "wrong"; shown as its message."""

    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == "correct"

    def __repr__(self) -> str:  # a check as the last line of a cell shows just the message
        return self.message

    __str__ = __repr__


def not_done(name: str) -> Verdict:
    return Verdict(
        "not done",
        f"not done yet: {name} still raises NotImplementedError. "
        "Replace that line with your code and run the cell again.",
    )


def averaging_mistakes(batch: int, pixels: int = 1) -> dict[float, str]:
    mistakes = {
        batch: "the batch size: average over the batch instead of summing",
        1 / batch: f"1/{batch}: sum where you averaged",
    }
    if pixels > 1:
        mistakes[pixels] = f"the number of pixels per image ({pixels}): average over the pixels too"
        mistakes[pixels * batch] = "the number of pixels in the batch: average instead of summing"
    return mistakes


class Wrong(Exception):
    """Raised inside a check to stop at the first thing that is wrong, with what to tell the student."""


def shape_text(t: torch.Tensor) -> str:
    return str(tuple(t.shape)) if t.dim() else "() (one number)"


def as_tensor(result, name: str, what: str) -> torch.Tensor:
    """The student's result as a float tensor, or Wrong saying what was expected instead."""
    if result is None:
        raise Wrong(f"your {name} returned None: did you forget `return`? Expected {what}.")
    if isinstance(result, torch.Tensor):
        return result.detach().float().cpu()
    if isinstance(result, (int, float, np.floating, np.integer)) and not isinstance(result, bool):
        return torch.tensor(float(result))
    if isinstance(result, np.ndarray):
        return torch.from_numpy(result).float()
    raise Wrong(f"your {name} returned a {type(result).__name__}; expected {what} as a torch tensor.")


def call_check(fn: Callable, name: str, args: tuple, inputs: str):
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as e:  # the student's code failed: say where, without torch's traceback
        raise Wrong(f"your {name} raised {type(e).__name__} on {inputs}: {e}") from None


def scale_hint(mine: torch.Tensor, expected: torch.Tensor, factors: dict[float, str]) -> str:
    """A guess at the usual mistake from how the two answers relate: a flipped sign, or a known factor
    (``factors`` maps a factor such as the batch size to what it means)."""
    if torch.allclose(mine, -expected, rtol=1e-4, atol=1e-5):
        return " It is the negative of the right answer: check the sign."
    nonzero = expected.abs() > 1e-6
    if not nonzero.any():
        return ""
    ratio = mine[nonzero] / expected[nonzero]
    r = ratio.flatten()[0].item()
    if not torch.allclose(ratio, torch.full_like(ratio, r), rtol=1e-3):
        return ""
    for factor, meaning in factors.items():
        if math.isclose(r, factor, rel_tol=1e-3):
            return f" It is {r:g} times the right answer, {meaning}."
    if ratio.numel() > 1:  # one number divided by another is always "a factor"
        return f" It is {r:.4g} times the right answer: a constant factor is off."
    return ""


def not_a_function(fn) -> Verdict:
    return Verdict(
        "wrong",
        f"pass your function itself (its name, without parentheses after it); got a value of type {type(fn).__name__}.",
    )


def known_mistake(mine: torch.Tensor, args: tuple, mistakes) -> str:
    """What a wrong answer is, when it equals one of ``mistakes``' (function, meaning) on the same inputs."""
    for wrong, meaning in mistakes:
        candidate = wrong(*args).detach().float()
        if candidate.shape == mine.shape and torch.allclose(mine, candidate, rtol=1e-4, atol=1e-5):
            return f" {meaning}"
    return ""


def compare_cases(fn, name, reference, reference_name, make_case, what, g, mistakes=()) -> None:
    """Raise Wrong at the first case where ``fn`` and ``reference`` disagree."""
    for case in range(1, CASES + 1):
        args, inputs, factors = make_case(g)
        expected = reference(*args).detach().float()
        mine = as_tensor(call_check(fn, name, args, inputs), name, what)
        if mine.shape != expected.shape:
            raise Wrong(
                f"your {name} returned shape {shape_text(mine)} on {inputs}; "
                f"expected {what}, shape {shape_text(expected)}."
            )
        if not torch.isfinite(mine).all():
            raise Wrong(
                f"your {name} returned inf or nan on {inputs} (case {case}); "
                f"{reference_name} gives {expected.flatten()[:4].tolist()}."
            )
        if not torch.allclose(mine, expected, rtol=1e-4, atol=1e-5):
            worst = (mine - expected).abs().max().item()
            hint = known_mistake(mine, args, mistakes) or scale_hint(mine, expected, factors)
            raise Wrong(
                f"not yet right: on case {case} ({inputs}) your {name} gives "
                f"{[round(v, 4) for v in mine.flatten()[:4].tolist()]}, {reference_name} gives "
                f"{[round(v, 4) for v in expected.flatten()[:4].tolist()]} "
                f"(largest difference {worst:.3g}).{hint}"
            )


def check_against(
    fn, name: str, reference: Callable, reference_name: str, make_case: Callable, what: str, mistakes=()
) -> Verdict:
    """Compare ``fn`` with ``reference`` on ``CASES`` random cases made by ``make_case(generator)``.

    ``make_case`` returns (args, description of the inputs, {factor: meaning} for the hints);
    ``what`` says in words what one answer should be; ``mistakes``: (function of the same args, what it
    means) pairs, the usual wrong answers, named when a student's answer equals one.
    """
    if not callable(fn):
        return not_a_function(fn)
    name = getattr(fn, "__name__", name)
    g = torch.Generator().manual_seed(0)
    try:
        with torch.random.fork_rng():  # the notebook's random numbers stay as they were
            compare_cases(fn, name, reference, reference_name, make_case, what, g, mistakes)
    except NotImplementedError:
        return not_done(name)
    except Wrong as e:
        return Verdict("wrong", str(e))
    return Verdict("correct", f"correct: {name} matches {reference_name} on {CASES} random cases.")
