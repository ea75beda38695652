"""The kit's Adam: fused where the device has the kernel, the same steps as PyTorch's default Adam, and a
checkpoint that resumes with the implementation of the device it resumes on; and denormals flushed on import."""

import copy
import subprocess
import sys

import torch
from torch import nn

from labkit.engine import optim
from labkit.engine.checkpoint import Checkpoint
from labkit.engine.environment import seed_everything
from labkit.engine.loop import fit
from labkit.vae import VAETraining, make_vae


def _steps(model, optimizer, batches):
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def test_fused_adam_on_the_cpu_takes_the_steps_of_pytorchs_default_adam():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    twin = copy.deepcopy(model)
    batches = [(torch.randn(16, 20), torch.randn(16, 5)) for _ in range(30)]
    start = model[0].weight.detach().clone()
    fused = optim.adam(model.parameters(), lr=3e-3, betas=(0.5, 0.999))
    default = torch.optim.Adam(twin.parameters(), lr=3e-3, betas=(0.5, 0.999))
    assert fused.param_groups[0]["fused"] is True and default.param_groups[0]["fused"] is None
    _steps(model, fused, batches)
    _steps(twin, default, batches)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert (model[0].weight - start).abs().max() > 1e-2  # 30 steps moved them: the comparison means something


def test_devices_without_a_fused_kernel_get_the_default_implementation():
    on_meta = [nn.Parameter(torch.empty(3, device="meta"))]
    integers = [torch.zeros(3, dtype=torch.int64)]
    assert not optim.fused_supported(on_meta) and not optim.fused_supported(integers)
    assert optim.adam(on_meta, lr=1e-3).param_groups[0]["fused"] is None


def test_a_saved_state_resumes_with_this_optimisers_implementation_and_its_moments():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    fused = optim.adam(model.parameters(), lr=1e-3)
    _steps(model, fused, [(torch.randn(8, 4), torch.randn(8, 2))] * 3)
    saved = copy.deepcopy(fused.state_dict())
    elsewhere = torch.optim.Adam(model.parameters(), lr=1e-3)  # as on a device without the fused kernel
    plain = torch.optim.Adam(model.parameters(), lr=1e-3)
    plain.load_state_dict(copy.deepcopy(saved))
    assert plain.param_groups[0]["fused"] is True  # PyTorch's own loading carries the saved implementation over
    optim.load_optimizer_state(elsewhere, saved)
    assert elsewhere.param_groups[0]["fused"] is None
    for p in model.parameters():
        torch.testing.assert_close(elsewhere.state[p]["exp_avg"], fused.state[p]["exp_avg"])
        assert float(elsewhere.state[p]["step"]) == 3


def test_a_run_checkpointed_with_the_default_adam_resumes_fused_to_the_same_end(tmp_path, mnist_offline):
    """A checkpoint written before the kit used the fused Adam resumes with it, and only rounding separates
    the result from a run that was fused throughout."""
    x, test_x = mnist_offline.train_x[:512], mnist_offline.test_x[:128]

    def run(epochs, folder, fused):
        seed_everything(0)
        training = VAETraining(make_vae("narrow"), lr=1e-3)
        if not fused:
            training.optimizer = training.optimizers["optimizer"] = torch.optim.Adam(
                training.model.parameters(), lr=1e-3
            )
        history = fit(training, x, test_x, epochs=epochs, batch_size=64, progress=False, checkpoint=folder)
        return training, history

    run(1, tmp_path / "resumed", fused=False)
    resumed, resumed_history = run(2, tmp_path / "resumed", fused=True)
    assert resumed.optimizer.param_groups[0]["fused"] is True
    assert Checkpoint(tmp_path / "resumed").load()["epochs_done"] == 2
    _, straight_history = run(2, tmp_path / "straight", fused=True)
    assert abs(resumed_history[-1]["test_neg_elbo"] - straight_history[-1]["test_neg_elbo"]) < 0.5


DENORMALS_AFTER_IMPORT = """
import torch
import labkit
tiny = torch.full((4_000_000,), 1e-39)  # a denormal float32; 4 million of them run on every worker thread
print(int(((tiny * 1.0) != 0).sum()), float(torch.tensor([1e-39]) * 1.0))
"""


def test_importing_labkit_flushes_denormals_in_the_main_and_the_worker_threads():
    """The VAE's epochs double in time once Adam's running means turn denormal (``environment.flush_denormals``).
    Without the flag every product stays 1e-39; with it set after torch's worker threads started, the
    workers' half of the elements would."""
    done = subprocess.run(
        [sys.executable, "-c", DENORMALS_AFTER_IMPORT], capture_output=True, text=True, check=True, timeout=120
    )
    nonzero, single = done.stdout.split()
    assert (int(nonzero), float(single)) == (0, 0.0)
