"""labkit: the helper library of a lab-notebook course on autoencoders, VAEs, GANs and diffusion in PyTorch.

What a student reads, by model and idea:

    ae           the autoencoder of notebook 01 (a package): network, its training (optimiser, step),
                 settings, recipe
    vae          notebook 02's family (a package): reparameterisation, KL and ELBO (with their papers),
                 the network and its variants, its training, settings, recipe and bounds; the
                 conditional VAE (vae.cvae) and the VQ-VAE (vae.vqvae)
    gan          notebook 03's family (a package): the GAN losses, the adversarial step and sampling
                 (gan.training), the networks with shape comments (gan.nets), WGAN-GP (gan.wgan), the
                 conditional GAN (gan.cgan), the settings and recipes (gan.recipe)
    progression  watching a model learn: fixed noise after every epoch, as a figure and a GIF
    diffusion    notebook 05's family (a package): noise schedules, DDPM's and flow matching's losses,
                 the UNet, the samplers with classifier-free guidance, training and recipe
    metrics      reconstruction, a digit classifier, Fréchet distance, coverage, diversity
    swd          the sliced Wasserstein distance of image patches: colour samples judged offline
    compare      the measurements of notebook 04
    plots        every figure: image grids, curves, latent spaces
    models       what the networks share: MLP stacks, parameter counts, layer summaries
    losses       the Bernoulli likelihood of an image (the VAE's reconstruction term)

The engine, which students need not read (``labkit/engine/``, see its ``__init__``): the training loop and
what wraps it (resume, several GPUs, the NaN watch), what a training is (its history and precision),
checkpoints, the environment (device, Colab and Kaggle, smoke mode, folders), runs and the settings' checks.
Around it: data (resident MNIST), image_folder and art (image folders, the gallery, CIFAR-10), datasets (the
registry behind ``--dataset``), experiments (the registry of families, the one place that lists them: every
recipe by name, and ``trained``; each family declares its recipes as ``labkit.engine.family`` describes), report
(REPORT.md), doctor, submit, grade (a package) and gradebook (instructors), hosted, notebook, exercises (a
package: one module per notebook's checks), explore.

Imports only go down, in at most eight floors (``tests/test_house.py``): the engine at the bottom, then the
data, the metrics and the families' networks and trainings, their recipes, the registry of families, the
course's and the instructors' tools, and the command line on top. No family imports another, and outside the
families only the registry names them (besides the report's outline and the exercise checks, one part and one
module per notebook): the command line, the doctor, grade, the gradebook, notebook 04 and ``make run`` loop
over ``experiments.FAMILIES``.

The names most notebooks use are here at the top: ``labkit.fit``, ``labkit.evaluate``,
``labkit.History``, ``labkit.TrainingBase``, ``labkit.seconds_per_epoch``, ``labkit.pick_device``,
``labkit.seed_everything``, ``labkit.pick``, ``labkit.smoke_mode`` and ``labkit.gradient_penalty``.
"""

from . import ae, art, data, experiments, gan, losses, metrics, models, plots, vae
from .engine.environment import flush_denormals, pick, pick_device, seed_everything, smoke_mode
from .engine.loop import evaluate, fit
from .engine.training import History, TrainingBase, seconds_per_epoch
from .gan.wgan import gradient_penalty

flush_denormals()  # before torch starts its worker threads, which inherit the setting

__version__ = "0.1.0"

__all__ = [
    "ae",
    "art",
    "data",
    "engine",
    "experiments",
    "diffusion",
    "gan",
    "image_folder",
    "losses",
    "metrics",
    "models",
    "plots",
    "progression",
    "vae",
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
