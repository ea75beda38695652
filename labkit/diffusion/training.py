"""Training a denoiser for ``labkit.engine.loop.fit``: one objective step on a batch, the running average
of the weights that samples are drawn from, and a test loss that is the same numbers every epoch.
Notebook 05, "Training", writes the step out; this is the copy the command line runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..engine import optim, settings
from ..engine.training import TrainingBase
from ..models import EMA_WARMUP as EMA_WARMUP  # benchmarks/diffusion_ema.py measured it for this model
from ..models import classes_in_turn
from ..models import exponential_moving_average as exponential_moving_average
from .losses import TIME_DENSITIES, drop_labels, eps_loss, flow_matching_loss
from .samplers import SAMPLERS, check_sampler, network_evaluations, sample
from .schedule import NoiseSchedule, flow_interpolate, to_signed, to_unit

OBJECTIVES = tuple(SAMPLERS)  # "eps" (DDPM) and "flow" (flow matching)
# Flow matching samples with Heun's method: on the offline digits, 16 Heun steps (31 network evaluations) gave a
# Fréchet distance of 8.5 after 4,000 training steps where 32 Euler steps (32 evaluations) gave 10.4.
DEFAULT_SAMPLER = {"eps": "ddim", "flow": "heun"}
DEFAULT_SAMPLE_STEPS = {"ddim": 32, "euler": 32, "heun": 16}  # "ddpm" visits every one of the schedule's steps
# Images sampled at once, per device type: on a CPU, batches of 1,000 allocate activations so large that every
# step maps fresh memory; 128 at a time draw 1,000 samples in half the time (2 cores). A GPU takes them all.
DRAW_BATCH = {"cpu": 128}
# Device types whose network is kept in channels-last memory (NHWC). On a CPU, oneDNN's convolutions run faster on
# it: a training step of the CPU UNet (width 16, batch 64) took 0.89 of the contiguous one's time, the median of 12
# rounds side by side (benchmarks/results/diffusion_memory_format.json; the step's time varies by more than that
# from round to round). On a GPU it is left out until measured there: CUDA's GroupNorm has long returned contiguous
# tensors, converting between the two layouts around every norm.
CHANNELS_LAST = ("cpu",)
LR_SCHEDULES = ("constant", "linear")


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int | None, schedule: str) -> float:
    """The fraction of the peak learning rate that step ``step`` (counted from 0) trains with: rising linearly
    over the first ``warmup_steps`` (Goyal et al. 2017), then 1 ("constant"), or falling linearly to nearly 0
    at step ``total_steps`` ("linear"; 1 while the run's length is unknown). A learning rate that falls to
    the end is what a run of a fixed budget wants: its last steps refine instead of jumping about."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or not total_steps:
        return 1.0
    return max(total_steps - step, 1) / max(total_steps - warmup_steps, 1)


class DiffusionTraining(TrainingBase):
    """A denoising network trained with ``objective`` "eps" (predict the noise, DDPM) or "flow" (predict the
    velocity, flow matching), with Adam and an exponential moving average of its weights (``ema``, used to
    sample and to measure), its learning rate warmed up over ``warmup_steps`` and then kept or lowered
    linearly to the run's end (``lr_schedule``, see ``learning_rate_factor``). With ``num_classes`` (the
    network's), steps take labels and drop each to the "no label" class with probability ``label_dropout``
    (classifier-free guidance). Images arrive in [0, 1] and are scaled to [-1, 1]. Reports ``loss`` per batch;
    ``eval_step`` the same loss of the averaged weights at fixed times and noise, so that epochs compare.
    ``draw`` gives samples with ``sampler`` (default: DDIM for eps, Heun for flow) in ``sample_steps`` steps
    and, for a conditional network, ``guidance``."""

    name = "diffusion"

    def __init__(
        self,
        net: nn.Module,
        *,
        objective: str = "eps",
        schedule: NoiseSchedule | None = None,
        lr: float = 2e-4,
        ema_decay: float = 0.999,
        label_dropout: float = 0.1,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
        time_density: str = "uniform",
        sampler: str | None = None,
        sample_steps: int | None = None,
        guidance: float = 2.0,
    ):
        settings.one_of("objective", objective, OBJECTIVES, "eps: DDPM's noise prediction; flow: flow matching")
        settings.one_of("time_density", time_density, TIME_DENSITIES, "which times flow matching trains on")
        if not 0 <= label_dropout < 1:
            raise ValueError(f"label_dropout must be a probability in [0, 1), not {label_dropout!r}")
        if next(net.parameters()).device.type in CHANNELS_LAST:
            net.to(memory_format=torch.channels_last)  # in place, before the average copies it
        self.net, self.objective = net, objective
        self.schedule = schedule or NoiseSchedule()
        self.sampler = sampler or DEFAULT_SAMPLER[objective]
        # None: the sampler's default (``DiffusionSettings.sampling_steps`` passes the settings' own)
        if sample_steps is None:
            sample_steps = DEFAULT_SAMPLE_STEPS.get(self.sampler, self.schedule.steps)
        self.sample_steps = sample_steps
        check_sampler(objective, self.sampler, self.sample_steps, self.schedule.steps)
        self.guidance = settings.number("guidance", guidance, at_least=0, what="a weight >= 0 (0: unconditional)")
        self.ema = exponential_moving_average(net, ema_decay)
        self.num_classes = getattr(net, "num_classes", 0)
        self.label_dropout, self.time_density = label_dropout, time_density
        self.modules = {"net": net, "ema": self.ema}
        self.lr = settings.learning_rate("lr", lr)
        self.lr_schedule = settings.one_of("lr_schedule", lr_schedule, LR_SCHEDULES)
        self.warmup_steps = settings.whole_number("warmup_steps", warmup_steps, low=0)
        self.total_steps: int | None = None  # the run's length, from ``fit`` (``plan``)
        self.optimizer = optim.adam(net.parameters(), lr=self.lr)
        self.optimizers = {"optimizer": self.optimizer}

    def plan(self, steps: int) -> None:
        """``fit`` says how many steps the whole run takes: the linear schedule ends there."""
        self.total_steps = steps

    def set_learning_rate(self) -> None:
        """Give this step its learning rate, ``lr`` times ``learning_rate_factor``. The steps taken are
        counted in the optimiser's parameter group, which a checkpoint saves with the optimiser, so a resumed
        run goes on with the rate it stopped at."""
        group = self.optimizer.param_groups[0]
        if "steps_taken" not in group:  # a new optimiser, or one saved before the count: as many as averaged
            group["steps_taken"] = int(self.unwrapped()[1].n_averaged)
        step = group["steps_taken"]
        factor = learning_rate_factor(step, self.warmup_steps, self.total_steps, self.lr_schedule)
        for each in self.optimizer.param_groups:
            each["lr"] = self.lr * factor
        group["steps_taken"] = step + 1

    def loss(self, net, x0: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.objective == "eps":
            return eps_loss(net, self.schedule, x0, labels)
        return flow_matching_loss(net, x0, labels, self.time_density)

    def train_step(self, x: torch.Tensor, *labels: torch.Tensor) -> dict[str, torch.Tensor]:
        y = drop_labels(labels[0], self.label_dropout, self.num_classes) if labels and self.num_classes else None
        self.set_learning_rate()
        with self.precision.autocast():
            loss = self.loss(self.net, to_signed(x), y)
        self.precision.minimize(loss, self.optimizer)  # zero_grad, backward, step
        net, ema = self.unwrapped()
        ema.update_parameters(net)
        return {"loss": loss.detach()}

    def unwrapped(self) -> tuple[nn.Module, AveragedModel]:
        """The network and its average themselves. While ``fit`` runs under ``torchrun``, ``self.net`` and
        ``self.ema`` are DistributedDataParallel wrappers (``labkit.engine.distributed.wrap``), which have no
        ``update_parameters`` or ``image_shape``; ``self.modules`` always holds the modules."""
        return self.modules["net"], self.modules["ema"]

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor, *labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective of the averaged weights on test images, at times spread evenly over (0, 1) and noise
        drawn from a fixed seed: the same question every epoch. The network sees ``DRAW_BATCH`` images at a
        time (on a CPU: the 1,000 test digits at once took twice as long)."""
        _, ema = self.unwrapped()
        x0 = to_signed(x)
        y = labels[0] if labels and self.num_classes else None
        generator = torch.Generator(device=x.device).manual_seed(0)
        noise = torch.randn(x0.shape, generator=generator, device=x.device)
        time = (torch.arange(len(x0), device=x.device) + 0.5) / len(x0)
        if self.objective == "eps":
            t = (time * self.schedule.steps).long().clamp(max=self.schedule.steps - 1)
            noisy, time, target = self.schedule.q_sample(x0, t, noise), t.float() / self.schedule.steps, noise
        else:
            noisy, target = flow_interpolate(x0, noise, time), x0 - noise
        size = DRAW_BATCH.get(x.device.type, len(x0))
        squared_error = torch.zeros((), device=x.device)
        for part in torch.arange(len(x0), device=x.device).split(size):
            with self.precision.autocast():
                prediction = ema(noisy[part], time[part], None if y is None else y[part])
            squared_error += F.mse_loss(prediction.float(), target[part], reduction="sum")
        return {"loss": squared_error / target.numel()}

    @property
    def network_evaluations(self) -> int:
        """Calls of the network per sample with this training's sampler and steps: two per step where
        classifier-free guidance mixes a conditional and an unconditional prediction (notebook 04, "Cost")."""
        return network_evaluations(self.sampler, self.sample_steps, self.guidance if self.num_classes else None)

    @torch.no_grad()
    def draw(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        seed: int = 0,
        *,
        trajectory: list | None = None,
        averaged: bool = True,
    ):
        """``n`` images in [0, 1] from the averaged weights (``averaged=False``: the trained weights themselves,
        to see what the average changes), the noise drawn from ``seed`` (the same seed, the same starting noise:
        the fixed-noise progression). A conditional network draws ``labels`` (default: the classes in turn) with
        this training's guidance. ``trajectory``: a list that receives x after every step. Drawn in batches of
        ``DRAW_BATCH`` (on a CPU), one after the other from the same random generator."""
        net, ema = self.unwrapped()
        device = next(net.parameters()).device
        if labels is None and self.num_classes:
            labels = classes_in_turn(n, self.num_classes, device)
        generator = torch.Generator(device=device).manual_seed(seed)
        size = DRAW_BATCH.get(device.type, n)
        parts, paths = [], []
        for start in range(0, n, size):
            path = [] if trajectory is not None else None
            parts.append(
                sample(
                    ema if averaged else net,
                    (min(size, n - start), *net.image_shape),
                    objective=self.objective,
                    sampler=self.sampler,
                    steps=self.sample_steps,
                    schedule=self.schedule,
                    labels=None if labels is None else labels[start : start + size],
                    guidance=self.guidance,
                    null_label=self.num_classes,
                    generator=generator,
                    device=device,
                    trajectory=path,
                )
            )
            paths.append(path)
        if trajectory is not None:
            trajectory.extend(torch.cat(moment) for moment in zip(*paths))  # x of every image after each step
        images = torch.cat(parts)
        return to_unit(images)
