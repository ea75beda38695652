"""Optional exercises of the notebooks, and the checks that compare a student's function with labkit's.

A check runs the function on a few random cases and returns a ``Verdict`` that says in words what is
right or what differs (shape, type, values); a stub that still raises ``NotImplementedError`` is
"not done yet", never an error. Each notebook offers its exercise near the end, under "Exercise".
Where a wrong answer is a usual mistake (a missing square root, a path run backwards), the check names it.
"""

from .ae import check_mse_per_pixel
from .checking import CASES, Verdict
from .diffusion import check_ddim_step, check_flow_matching_loss, check_q_sample
from .gan import check_discriminator_loss
from .vae import check_kl, check_reparameterize

__all__ = [
    "CASES",
    "Verdict",
    "check_mse_per_pixel",
    "check_kl",
    "check_reparameterize",
    "check_discriminator_loss",
    "check_q_sample",
    "check_ddim_step",
    "check_flow_matching_loss",
]
