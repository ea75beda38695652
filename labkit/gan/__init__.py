"""The GAN family of notebook 03 (a package, laid out as ``labkit.diffusion``).

training  the adversarial game: the two losses (with their paper), the step that ``fit`` runs
          (``GANTraining``), drawing samples from a generator
nets      the networks: the MLP GAN of MNIST, the DCGAN with its shape comments, spectral norm
wgan      WGAN-GP: the critic's loss, the gradient penalty, the critic's training step
cgan      the conditional GAN: the label given to both networks, and what its runs record
recipe    ``GANSettings``, ``DCGANSettings``, ``CGANSettings`` and their recipes: what
          ``python -m labkit train gan|dcgan|cgan`` runs
"""

from .training import (
    GANTraining,
    check_real_label,
    discriminator_loss,
    generator_loss,
    sample,
    smallest_discriminator_loss,
)

__all__ = [
    "GANTraining",
    "check_real_label",
    "discriminator_loss",
    "generator_loss",
    "sample",
    "smallest_discriminator_loss",
]
