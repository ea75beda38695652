"""The diffusion family's settings and recipe: ``python -m labkit train diffusion`` trains a UNet with DDPM's
or flow matching's objective, draws samples with the chosen sampler from the averaged weights, judges them
as the GANs are judged (classifier Fréchet distance, classes covered) and checks that they are not copies of
training images (``labkit.metrics.memorisation``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .. import datasets, metrics, plots, progression
from ..data import ImageData
from ..engine import distributed, environment, settings
from ..engine.family import DoctorCheck, Option, Recipe
from ..engine.loop import evaluate
from ..engine.runs import Run, Trained, fit_in_run, start_run, training_cost
from ..engine.training import History
from ..models import classes_in_turn
from .losses import TIME_DENSITIES
from .samplers import SAMPLERS, check_sampler, network_evaluations
from .schedule import SCHEDULES, NoiseSchedule, to_unit
from .training import DEFAULT_SAMPLE_STEPS, DEFAULT_SAMPLER, LR_SCHEDULES, OBJECTIVES, DiffusionTraining
from .unet import UNet, check_image_shape

N_SAMPLES = (1000, 256)  # images drawn to judge a run (full, smoke), as many as the GANs are judged on
TRAJECTORY_IMAGES = 8  # rows of the noise-to-image strip
PROGRESSION_IMAGES = 16  # images drawn from the same noise after every epoch (each costs a full sampling)
# Without a GPU the UNet is narrower (width 16: 4 times cheaper a step than 32) and trains on batches of 64: at a
# CPU's fixed budget, more steps of a smaller network give better samples than fewer of a wider one
# (benchmarks/diffusion_budget.py). 65 epochs are 4,095 steps on the 4,000 offline digits: after 4,000 steps at a
# constant lr of 0.001, flow matching with logit-normal times reached a Fréchet distance of 7.8 on 1,000 samples of
# 16 Heun steps (uniform times: 8.5; after 2,000 steps: 13.6). With lr 0.002 falling linearly to 0 (the default
# since; after 3,000 steps 9.3 where a constant 0.001 gave 10.3) the whole run of 65 epochs reached 8.28 in 14.7
# minutes, evaluation included, where a step took about 0.18 s (11.3 s an epoch). The network in channels-last
# memory (labkit.diffusion.training.CHANNELS_LAST) made a step cheaper, and 72 epochs (4,536 steps) reached 7.91,
# all 10 digits, 0.001 memorised, in 14.8 minutes (12.3 of them training, 10.3 s an epoch, while other work
# shared the machine); the minutes follow the machine's step time.
CPU_EPOCHS = 72
# The conditional model is told the digit and needs fewer steps to draw it: 40 epochs (2,500 steps, its rate falling
# to 0 at the last) reached a conditional accuracy of 0.997 at w = 2 in 455 s of training
# (benchmarks/results/diffusion_budget_conditional.json), where 65 would take the run past 15 minutes.
CPU_EPOCHS_CONDITIONAL = 40
# Notebook 05 (and notebook 04, which compares its runs) trains fewer CPU epochs than the command line: `make run`
# runs all five notebooks, notebook 03 takes 17 of its minutes on 2 cores, and notebook 05 at the command line's
# epochs took 29.6 more. At 20 and 10 epochs it took 10.5 minutes, notebook 04 1.9, in a five-notebook run (README,
# "Full settings"): about 32 minutes in all, near the half hour. The command line keeps the epochs that reach the
# course's numbers; the notebook's models draw rougher digits (Fréchet distance 16 to 18 after 20 epochs), and its
# Settings cell says so.
NOTEBOOK_CPU_EPOCHS, NOTEBOOK_CPU_EPOCHS_CONDITIONAL = 20, 10
FULL_WIDTH, FULL_BATCH_SIZE, FULL_EPOCHS = 32, 128, 30  # the course's settings, on a GPU


@dataclass
class DiffusionSettings(settings.RunSettings):
    """Defaults of notebook 05 ("Settings"). ``objective``: "eps" (DDPM's noise prediction, with
    ``schedule`` of ``steps`` noise levels) or "flow" (flow matching); ``sampler`` (default: DDIM for eps,
    Heun for flow) and ``sample_steps`` (default: the sampler's, see ``sampling_steps``) say how samples are
    drawn; ``conditional`` trains with the labels
    (dropped with probability ``label_dropout``) and samples with classifier-free ``guidance``; ``ema``: the
    decay of the weights' average that samples are drawn from; ``lr`` the peak learning rate, reached after
    ``warmup_steps`` and kept ("constant") or lowered to 0 at the run's last step (``lr_schedule`` "linear",
    ``labkit.diffusion.training.learning_rate_factor``); ``width`` and ``mults``: the UNet
    (``labkit.diffusion.unet.UNet``); ``time_density``: which times flow matching trains on."""

    epochs: int | None = None  # None: 30, or on a CPU CPU_EPOCHS (CPU_EPOCHS_CONDITIONAL for a conditional model)
    batch_size: int = field(default_factory=lambda: environment.pick(full=FULL_BATCH_SIZE, smoke=128, cpu=64))
    lr: float = 2e-3
    lr_schedule: str = "linear"
    warmup_steps: int = 100
    objective: str = "flow"
    schedule: str = "cosine"
    steps: int = 1000
    sampler: str | None = None
    sample_steps: int | None = None
    conditional: bool = False
    guidance: float = 2.0
    label_dropout: float = 0.1
    ema: float = 0.999
    width: int = field(default_factory=lambda: environment.pick(full=FULL_WIDTH, smoke=8, cpu=16))
    mults: tuple = (1, 2, 2)
    time_density: str = "logit-normal"  # 7.8 against uniform's 8.5 after 4,000 steps (flow matching, offline digits)

    def __post_init__(self):
        if self.epochs is None:
            cpu_epochs = CPU_EPOCHS_CONDITIONAL if self.conditional else CPU_EPOCHS
            self.epochs = environment.pick(full=FULL_EPOCHS, smoke=environment.SMOKE_EPOCHS, cpu=cpu_epochs)
        super().__post_init__()
        settings.one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES, "linear: falls to 0 at the last step")
        settings.whole_number("warmup_steps", self.warmup_steps, low=0)
        settings.one_of("objective", self.objective, OBJECTIVES, "eps: DDPM's noise prediction; flow: flow matching")
        settings.one_of("schedule", self.schedule, SCHEDULES)
        settings.whole_number("steps (noise levels)", self.steps, low=2)
        check_sampler(self.objective, self.sampler_name, self.sampling_steps, self.steps)
        if self.sampler_name == "ddpm" and self.sampling_steps != self.steps:
            raise ValueError(
                f"--sampler ddpm visits all {self.steps} noise levels: give --sample-steps {self.steps}, "
                "or choose --sampler ddim for fewer"
            )
        settings.number("guidance", self.guidance, at_least=0, what="a weight >= 0 (0: unconditional, 1: plain)")
        settings.number("label_dropout", self.label_dropout, at_least=0, what="a probability in [0, 1)")
        if self.label_dropout >= 1:
            raise ValueError(f"label_dropout must be a probability in [0, 1), not {self.label_dropout!r}")
        settings.number("ema", self.ema, at_least=0, what="a decay in [0, 1) such as 0.999")
        if self.ema >= 1:
            raise ValueError(f"--ema must be a decay in [0, 1) such as 0.999, not {self.ema!r}")
        settings.whole_number("width", self.width)
        settings.one_of("time_density", self.time_density, TIME_DENSITIES)
        shape = datasets.check_dataset(self.dataset, self.image_size)
        check_image_shape(shape, self.mults)  # an image size the UNet cannot halve: refused now, not after loading
        if self.conditional and not datasets.has_labels(self.dataset):
            raise ValueError(
                f"a conditional diffusion model learns to draw the class it is given and needs a label for every "
                f"image, and {self.dataset} has none: choose one of {', '.join(datasets.LABELLED)}, or leave out "
                "--conditional"
            )

    @classmethod
    def for_notebook(cls, **fields) -> DiffusionSettings:
        """Notebook 05's settings, which notebook 04 compares: those of ``DiffusionSettings(**fields)``, but on a
        CPU ``NOTEBOOK_CPU_EPOCHS`` (``NOTEBOOK_CPU_EPOCHS_CONDITIONAL``) epochs unless ``epochs`` is given, so
        that `make run` of the five notebooks takes about half an hour (notebook 05, "Settings")."""
        if fields.get("epochs") is None:
            cpu = NOTEBOOK_CPU_EPOCHS_CONDITIONAL if fields.get("conditional") else NOTEBOOK_CPU_EPOCHS
            fields["epochs"] = environment.pick(full=None, smoke=None, cpu=cpu)  # None: the command line's epochs
        return cls(**fields)

    @property
    def cpu_note(self) -> str | None:
        """The sentence that says plainly that this model is the CPU's smaller one (the ``cpu=`` of
        ``labkit.pick``) and what a GPU runs instead; None in smoke mode, on a GPU, or for the course's width."""
        if environment.smoke_mode() or self.width >= FULL_WIDTH or not environment.training_on_cpu():
            return None
        command_line = CPU_EPOCHS_CONDITIONAL if self.conditional else CPU_EPOCHS
        budget = (
            f"fewer than the {command_line} of `python -m labkit train diffusion"
            f"{' --conditional' if self.conditional else ''}` (about 15 minutes a run), whose digits are better"
            if self.epochs < command_line
            else "so that a run fits in about 15 minutes on 2 cores"
        )
        return (
            f"CPU: a diffusion UNet of width {self.width} on batches of {self.batch_size} for {self.epochs} epochs, "
            f"{budget}; a GPU runtime (Colab, Kaggle) trains the course's width {FULL_WIDTH} on batches of "
            f"{FULL_BATCH_SIZE} for {FULL_EPOCHS} epochs"
        )

    @property
    def sampler_name(self) -> str:
        """The sampler samples are drawn with: ``sampler``, or the objective's default."""
        return self.sampler or DEFAULT_SAMPLER.get(self.objective, "")

    @property
    def sampling_steps(self) -> int:
        """The steps samples are drawn in: ``sample_steps``, or the sampler's default (16 for Heun, whose steps
        call the network twice, 32 for DDIM and Euler, all T for DDPM; 4 in smoke mode)."""
        if self.sample_steps is not None:
            return self.sample_steps
        if self.sampler_name == "ddpm":
            return self.steps
        return environment.pick(full=DEFAULT_SAMPLE_STEPS.get(self.sampler_name, 32), smoke=4)

    @property
    def run_name(self) -> str:
        """``diffusion`` (flow matching) or ``diffusion-eps``, ``-cond`` when conditional, then the dataset."""
        name = "diffusion" + ("-eps" if self.objective == "eps" else "") + ("-cond" if self.conditional else "")
        return name + datasets.run_suffix(self.dataset, self.image_size)

    def training(
        self,
        device: torch.device | str = "cpu",
        image_shape: Sequence[int] | None = None,
        *,
        net: torch.nn.Module | None = None,
        training_class: type[DiffusionTraining] = DiffusionTraining,
    ) -> DiffusionTraining:
        """The training these settings describe (``training_class``: notebook 05 passes its own, whose steps
        it writes out) of ``net``, or of a fresh UNet on ``device`` for images of ``image_shape`` (default:
        the dataset's)."""
        if net is None:
            shape = image_shape or datasets.image_shape(self.dataset, self.image_size)
            net = UNet(shape, self.width, self.mults, num_classes=10 if self.conditional else 0).to(device)
        return training_class(
            net,
            objective=self.objective,
            schedule=NoiseSchedule(self.schedule, self.steps),
            lr=self.lr,
            lr_schedule=self.lr_schedule,
            warmup_steps=self.warmup_steps,
            ema_decay=self.ema,
            label_dropout=self.label_dropout,
            time_density=self.time_density,
            sampler=self.sampler_name,
            sample_steps=self.sampling_steps,
            guidance=self.guidance,
        )


def run_diffusion(
    cfg: DiffusionSettings | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    *,
    data: ImageData | None = None,
    callbacks=(),
) -> Trained | None:
    """Train the diffusion model of notebook 05 and write its figures and metrics.json; returns the trained
    run (None under torchrun on ranks other than 0). The run is called ``cfg.run_name``."""
    cfg = cfg or DiffusionSettings()
    run, device = start_run(cfg.run_name, cfg.seed, out, device)
    if cfg.cpu_note:
        print(f"labkit: {cfg.cpu_note}")
    data = datasets.load_for(cfg, device, data)
    training = cfg.training(device, data.image_shape)
    recorder = progression.FixedNoise(training, n=PROGRESSION_IMAGES, seed=cfg.seed)
    history = fit_in_run(run, training, data, cfg, progress, [recorder, *callbacks], labels=cfg.conditional)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    return save_diffusion_run(run, cfg=cfg, training=training, data=data, history=history, recorder=recorder)


def save_diffusion_run(
    run: Run,
    *,
    cfg: DiffusionSettings,
    training: DiffusionTraining,
    data: ImageData,
    history: History,
    recorder: progression.FixedNoise,
) -> Trained:
    """Measure a trained diffusion model (``diffusion_final``), save its figures (loss curves, samples, the
    fixed-noise progression and its GIF, the noise-to-image strip, and a row per digit for a conditional
    model) and metrics.json in ``run``; return the trained run. The command line calls it after training,
    and so does notebook 05 ("Training"), so that notebook 04 finds the notebook's runs."""
    device = data.train_x.device
    labels = (data.test_y,) if cfg.conditional else ()
    test = evaluate(training, data.test_x, *labels)
    final = diffusion_final(cfg, training, data, test, history)
    title = f"{'conditional ' if cfg.conditional else ''}{'DDPM' if cfg.objective == 'eps' else 'flow matching'}"
    title += f" on {data.label}"
    with torch.no_grad():
        run.save_figure(plots.loss_curves(history, (("loss", "objective (MSE)"),), title=title), "loss_curves")
        run.save_figure(plots.image_grid(training.draw(64, seed=cfg.seed), title=f"{title}: samples"), "samples")
        run.save_figure(recorder.figure(title=f"{title}: the same noise after each epoch"), "progression")
        run.figures["progression_gif"] = recorder.save_gif(run.dir / "progression.gif", n_show=PROGRESSION_IMAGES).name
        path: list[torch.Tensor] = []
        training.draw(TRAJECTORY_IMAGES, seed=cfg.seed + 1, trajectory=path)
        shown = sorted({round(i * (len(path) - 1) / 7) for i in range(8)})  # up to eight moments, noise to image
        strip = torch.stack([to_unit(path[i]) for i in shown], dim=1).flatten(0, 1)  # row: one image's path
        run.save_figure(plots.image_grid(strip, nrow=len(shown), title=f"{title}: from noise to image"), "trajectory")
        if cfg.conditional:
            rows = torch.arange(10, device=device).repeat_interleave(10)
            grid = training.draw(len(rows), rows, seed=cfg.seed + 2)
            run.save_figure(plots.image_grid(grid, nrow=10, title=f"{title}: one row per class 0-9"), "digit_grid")
    plots.close_all()
    return run.record(
        model="diffusion",
        cfg=cfg,
        training=training,
        data=data,
        history=history,
        final=final,
        device=device,
        note=replace(cfg, epochs=len(history)).cpu_note,  # the epochs trained: notebook 05 reuses a longer run
    )


def diffusion_final(cfg: DiffusionSettings, training, data: ImageData, test: dict, history: History) -> dict:
    """The ``final`` entry of a diffusion run: its test objective, the sampler and its cost (seconds per 1,000
    samples, network evaluations per sample), and the judge's numbers on ``N_SAMPLES`` samples: classifier
    Fréchet distance and classes covered (the MNIST family), the conditional accuracy of a conditional run,
    and the memorised fraction."""
    n = environment.pick(*N_SAMPLES)
    device = data.train_x.device
    asked = classes_in_turn(n, training.num_classes, device) if cfg.conditional else None
    guidance = cfg.guidance if cfg.conditional else None
    start = time.perf_counter()
    samples = training.draw(n, asked, seed=cfg.seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    final = {
        "test_loss": test["loss"],
        "sampler": cfg.sampler_name,
        "sample_steps": cfg.sampling_steps,
        "network_evaluations": network_evaluations(cfg.sampler_name, cfg.sampling_steps, guidance),
        "sampling_seconds_per_1000": seconds * 1000 / n,
        "train_seconds": sum(history.series("seconds")),  # every epoch's training, evaluation excluded
        **training_cost(history, training.net),
    }
    if metrics.judged_by_digit_classifier(data):  # the digit classifier's judgement
        final.update(metrics.digit_sample_quality(data, samples, seed=cfg.seed))
        if cfg.conditional:
            classifier, _ = metrics.digit_classifier(data, seed=cfg.seed)
            final.update(metrics.conditional_accuracy(samples, asked, classifier))
    elif data.image_shape[0] == 3:
        final.update(metrics.inception_fid(data.test_x[:n], samples))
    copies = metrics.memorisation(samples, data.train_x, data.test_x)
    final.update({k: copies[k] for k in ("memorised_fraction", "memorisation_threshold")})
    return final


ON_GPU = {"float16_on_cpu": False}  # the doctor checks float16 on GPUs only: the tests check it on a CPU
RECIPE = Recipe(
    "diffusion",
    run_diffusion,
    DiffusionSettings,
    options=(
        Option("objective", "diffusion: flow (flow matching, default) or eps (DDPM)", str, OBJECTIVES),
        Option("conditional", "diffusion: learn to draw the class asked for (classifier-free guidance)", bool),
        Option("guidance", "diffusion, conditional: guidance weight w (0: none, 1: plain)", float),
        Option("sampler", "diffusion: ddim or ddpm (objective eps), euler or heun (objective flow)"),
        Option("sample_steps", "diffusion: sampler steps (heun 16, ddim/euler 32)", int),
        Option("ema", "diffusion: decay of the weights' average samples come from (0.999)", float),
        Option(
            "lr_schedule",
            "diffusion: after the warm-up, keep --lr (constant) or lower it to 0 at the last step (linear, default)",
            str,
            LR_SCHEDULES,
        ),
        Option("warmup_steps", "diffusion: steps the learning rate rises over (100)", int),
    ),
    doctor=(
        # the UNet's attention and GroupNorm, guidance's label dropout; a CPU's float16 convolutions take minutes
        DoctorCheck.of("diffusion-eps", DiffusionSettings, check=ON_GPU, objective="eps"),
        DoctorCheck.of("diffusion-flow-cond", DiffusionSettings, "labelled digits", check=ON_GPU, conditional=True),
    ),
    drawn=True,
    gradebook=("fid_classifier", "memorised_fraction"),
    cpu_note=lambda: DiffusionSettings.for_notebook().cpu_note,
    label="Diffusion",
)
__all__ = ["RECIPE", "SAMPLERS", "DiffusionSettings", "run_diffusion", "save_diffusion_run"]
