"""The autoencoder of notebook 01 (a package, laid out as ``labkit.diffusion``).

model     the MLP autoencoder, and ``ConvAutoencoder`` for other image shapes
training  one Adam step on the mean squared error (``AutoencoderTraining``)
recipe    ``AESettings`` and ``run_ae``: what ``python -m labkit train ae`` runs
"""

from .model import Autoencoder, ConvAutoencoder
from .recipe import AESettings, ae_final, run_ae
from .training import AutoencoderTraining

__all__ = ["AESettings", "Autoencoder", "AutoencoderTraining", "ConvAutoencoder", "ae_final", "run_ae"]
