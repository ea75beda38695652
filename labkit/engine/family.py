"""What a model family tells the rest of labkit, so that the command line, ``doctor``, ``grade``, the gradebook,
notebook 04 and ``make run`` loop over the families and name none of them.

Each family declares its recipes where it keeps them (``labkit.ae.recipe.RECIPE``, ``labkit.vae.recipe.RECIPE``,
``labkit.gan.recipe.RECIPES``, ...), and the registry ``labkit.experiments.FAMILIES`` lists the families. A new
family is a package with its recipes declared this way and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DOCTOR_DATA = ("digits", "labelled digits", "art")  # what a doctor check trains on: MNIST, MNIST with its labels,
# or 64x64 abstract art


@dataclass(frozen=True)
class DoctorCheck:
    """One short epoch that ``python -m labkit doctor`` trains: ``build(device)`` returns a fresh training built
    as the recipe builds it (``RunSettings.fresh_training``), on ``data`` (one of ``DOCTOR_DATA``)."""

    name: str
    build: Callable[[Any], Any]
    data: str = "digits"
    float16_on_cpu: bool = True  # False: a CPU's float16 convolutions take minutes; the forced-float16 row is skipped
    compiled: bool = False  # this model is also the doctor's check of torch.compile (and of channels-last on a GPU)

    def __post_init__(self):
        if self.data not in DOCTOR_DATA:
            raise ValueError(f"a doctor check trains on one of {', '.join(DOCTOR_DATA)}, got {self.data!r}")

    @classmethod
    def of(cls, name: str, settings: type, data: str = "digits", *, check: dict | None = None, **fields) -> DoctorCheck:
        """The check ``name`` that trains ``settings(epochs=1, **fields)``, as the recipe builds it, on ``data``;
        ``check``: the check's other fields (``float16_on_cpu``, ``compiled``)."""
        return cls(name, lambda device: settings(epochs=1, **fields).fresh_training(device), data, **(check or {}))


@dataclass(frozen=True)
class Option:
    """A command-line option of ``python -m labkit train`` that sets the settings field ``name``
    (``--name-with-dashes``): ``help`` says what it does for this recipe; ``kind`` is its type (``bool`` for a
    switch), ``choices`` the values it takes. Recipes that share a field share the option: their helps are joined."""

    name: str
    help: str
    kind: type = str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Recipe:
    """One model that ``python -m labkit train NAME`` trains into ``runs/NAME``.

    ``run(cfg, out=None, device=None, progress=True)`` is its headless recipe and ``settings`` the dataclass of
    its settings (``labkit.engine.settings.RunSettings``). ``options`` are its command-line options beyond the
    common ones. ``doctor``: the short epochs ``doctor`` trains of it. ``remeasure(training, data, cfg)``: the
    numbers ``grade`` measures again on a student's weights, on the test split, as the recipe measured them;
    ``drawn``: ``grade`` judges what the weights draw instead (``labkit.grade.drawn``). ``gradebook``: the numbers
    of its run that the gradebook shows in columns. ``cpu_note()``: the sentence that says what its notebook
    trains less of on a CPU (None when nothing), which ``make run`` prints. ``label``: its name in tables."""

    name: str
    run: Callable[..., Any]
    settings: type
    options: tuple[Option, ...] = ()
    doctor: tuple[DoctorCheck, ...] = ()
    remeasure: Callable[[Any, Any, Any], dict[str, float]] | None = None
    drawn: bool = False
    gradebook: tuple[str, ...] = ()
    cpu_note: Callable[[], str | None] | None = None
    label: str = ""  # its name in tables (notebook 04's columns); empty: ``name``

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def graded_again(self) -> bool:
        """Whether ``grade`` runs a student's weights of this model again."""
        return self.drawn or self.remeasure is not None


@dataclass(frozen=True)
class Family:
    """A model family: its package's name and its recipes, in the order the command line, the doctor and the
    gradebook list them."""

    name: str
    recipes: tuple[Recipe, ...] = field(default_factory=tuple)
