"""The fourth family: diffusion (DDPM, DDIM) and flow matching, notebook 05.

schedule   the forward process: noise schedules (linear, cosine), q(x_t | x_0), the flow's straight path
losses     the two objectives: DDPM's noise prediction and flow matching's velocity, label dropout
unet       the small UNet that denoises, with its time and label embeddings
samplers   DDPM, DDIM, Euler and Heun, classifier-free guidance, network evaluations per sample
"""

from .losses import drop_labels, eps_loss, flow_matching_loss
from .samplers import sample
from .schedule import NoiseSchedule
from .unet import UNet

__all__ = ["NoiseSchedule", "UNet", "drop_labels", "eps_loss", "flow_matching_loss", "sample"]
