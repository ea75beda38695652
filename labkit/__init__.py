"""labkit: the helper library of a lab-notebook course on autoencoders, VAEs and GANs in PyTorch.

What a student reads, by model and idea:

    ae           the autoencoder of notebook 01: network, its training (model, optimiser, step), settings, recipe
    vae          the VAE of notebook 02: reparameterisation, KL and ELBO (with their papers), the
                 network and its variants, its training, settings, recipe
    gan_nets     the GAN networks (DCGAN, the MLP GAN) with shape comments
    gan          the GAN losses, the adversarial step, sampling
    progression  watching G learn: fixed noise after every epoch, as a figure and a GIF
    loop         the one training loop of the course, on one screen
    metrics      reconstruction, ELBO parts, a digit classifier, Fréchet distance, coverage, diversity
    compare      the measurements of notebook 04
    plots        every figure: image grids, curves, latent spaces
    models       what the networks share: MLP stacks, parameter counts, layer summaries
    losses       the Bernoulli likelihood of an image (the VAE's reconstruction term)

The engine, which students need not read: settings (smoke mode, folders, checking settings), device,
data (resident MNIST), image_folder and art (image folders, the gallery, CIFAR-10), precision,
harness (what wraps the loop: resume, several GPUs, the NaN watch), checkpoint, distributed, runs
(metrics.json and figures), experiments (every recipe by name) and gan_experiments (the GANs'
settings and recipes), report
(REPORT.md), doctor, submit, grade and gradebook (instructors), hosted, notebook, exercises, explore.
"""

from . import (
    ae,
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
    vae,
)
from .device import pick_device, seed_everything
from .settings import pick, smoke_mode

__version__ = "0.1.0"

__all__ = [
    "ae",
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
    "vae",
    "pick",
    "pick_device",
    "seed_everything",
    "smoke_mode",
]
