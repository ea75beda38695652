"""labkit: the helper library of a lab-notebook course on autoencoders, VAEs and GANs in PyTorch.

What a student reads, by model and idea:

    models       the autoencoder and the VAEs of notebooks 01 and 02, with shape comments
    losses       the VAE's objective: reparameterisation, KL, ELBO (with their papers)
    train        the AE and VAE training objectives: one optimisation step each
    gan_nets     the GAN networks (DCGAN, the MLP GAN) with shape comments
    gan          the GAN losses, the adversarial step, sampling
    progression  watching G learn: fixed noise after every epoch, as a figure and a GIF
    loop         the one training loop of the course, on one screen
    metrics      reconstruction, ELBO parts, a digit classifier, Fréchet distance, coverage, diversity
    compare      the measurements of notebook 04
    plots        every figure: image grids, curves, latent spaces

The engine, which students need not read: settings (smoke mode, folders, checking settings), device,
data (resident MNIST), image_folder and art (image folders, the gallery, CIFAR-10), precision,
harness (what wraps the loop: resume, several GPUs, the NaN watch), checkpoint, distributed, runs
(metrics.json and figures), experiments and gan_experiments (settings and headless recipes), report
(REPORT.md), doctor, submit, grade and gradebook (instructors), hosted, notebook, exercises, explore.
"""

from . import (
    art,
    data,
    device,
    experiments,
    gan,
    harness,
    loop,
    losses,
    metrics,
    models,
    plots,
    precision,
    runs,
    settings,
    train,
)
from .device import pick_device, seed_everything
from .settings import pick, smoke_mode

__version__ = "0.1.0"

__all__ = [
    "art",
    "data",
    "device",
    "experiments",
    "gan",
    "gan_nets",
    "harness",
    "image_folder",
    "loop",
    "losses",
    "metrics",
    "models",
    "plots",
    "precision",
    "progression",
    "runs",
    "settings",
    "train",
    "pick",
    "pick_device",
    "seed_everything",
    "smoke_mode",
]
