"""labkit: the helper library of a lab-notebook course on autoencoders, VAEs, GANs and diffusion in PyTorch.

What a student reads, by model and idea:

    ae           the autoencoder of notebook 01: network, its training (optimiser, step), settings, recipe
    vae          the VAE of notebook 02: reparameterisation, KL and ELBO (with their papers), the
                 network and its variants, its training, settings, recipe
    cvae         the conditional VAE of notebook 02: the label given to encoder and decoder, and the
                 conditional accuracy (does a sample show the digit asked for?)
    vqvae        the VQ-VAE of notebook 02: codebook, straight-through estimator, commitment loss
    gan_nets     the GAN networks (DCGAN, the MLP GAN) with shape comments
    gan          the GAN losses, the adversarial step, sampling
    wgan         WGAN-GP: the critic's loss, the gradient penalty, the critic's training step
    progression  watching G learn: fixed noise after every epoch, as a figure and a GIF
    diffusion    notebook 05's family (a package): noise schedules, DDPM's and flow matching's losses,
                 the UNet, the samplers with classifier-free guidance, training and recipe
    metrics      reconstruction, ELBO parts, a digit classifier, Fréchet distance, coverage, diversity
    compare      the measurements of notebook 04
    plots        every figure: image grids, curves, latent spaces
    models       what the networks share: MLP stacks, parameter counts, layer summaries
    losses       the Bernoulli likelihood of an image (the VAE's reconstruction term)

The engine, which students need not read (``labkit/engine/``, see its ``__init__``): the training
loop and what wraps it (resume, several GPUs, the NaN watch), precision, checkpoints, devices, runs
and settings. Around it: data (resident MNIST), image_folder and art (image folders, the gallery,
CIFAR-10), experiments (every recipe by name) and gan_experiments (the GANs' settings and recipes),
report (REPORT.md), doctor, submit, grade and gradebook (instructors), hosted, notebook, exercises,
explore.

The names most notebooks use are here at the top: ``labkit.fit``, ``labkit.evaluate``,
``labkit.History``, ``labkit.TrainingBase``, ``labkit.seconds_per_epoch``, ``labkit.pick_device``,
``labkit.seed_everything``, ``labkit.pick``, ``labkit.smoke_mode`` and ``labkit.gradient_penalty``.
"""

from . import ae, art, cvae, data, experiments, gan, losses, metrics, models, plots, vae, vqvae, wgan
from .engine.device import pick_device, seed_everything
from .engine.loop import History, TrainingBase, evaluate, fit, seconds_per_epoch
from .engine.settings import pick, smoke_mode
from .wgan import gradient_penalty

__version__ = "0.1.0"

__all__ = [
    "ae",
    "art",
    "cvae",
    "data",
    "engine",
    "experiments",
    "gan",
    "gan_nets",
    "image_folder",
    "losses",
    "metrics",
    "models",
    "plots",
    "progression",
    "vae",
    "vqvae",
    "wgan",
    "History",
    "TrainingBase",
    "evaluate",
    "fit",
    "gradient_penalty",
    "pick",
    "pick_device",
    "seconds_per_epoch",
    "seed_everything",
    "smoke_mode",
]
