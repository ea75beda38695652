"""One process of the two-process job that tests/test_distributed.py starts with torchrun (gloo, CPU).

Trains the autoencoder for one epoch through the real command line (``labkit.__main__.main``),
then extends the same run to two epochs (``fit_in_run`` resumes from its checkpoint), then the
MNIST GAN through ``fit`` for a few steps, the conditional WGAN-GP (labels, the penalty's double
backward) likewise, the MNIST GAN through the command line, whose rank 0 alone measures the
samples' classifier Fréchet distance, and a small conditional diffusion model through its recipe (the
weights' average, guided sampling), then through ``fit`` with an average that follows the weights
exactly (decay 0). Each rank saves what the test compares in ``OUT/rank<r>.pt``:
the weights before and after each training, the history, and a checksum of the data shard it trained on.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT
"""

import dataclasses
import os
import sys
from pathlib import Path

import torch

from labkit import __main__ as cli
from labkit import ae, data, gan
from labkit.diffusion.recipe import DiffusionSettings, run_diffusion
from labkit.engine import distributed, environment, loop, runs
from labkit.gan import nets as gan_nets
from labkit.gan.recipe import CGANSettings


def weights(training) -> dict:
    """Every parameter and buffer of every module, copied."""
    return {
        f"{name}.{key}": value.detach().clone()
        for name, module in training.modules.items()
        for key, value in module.state_dict().items()
    }


def main(out: Path) -> int:
    found: dict = {"shard_sums": []}
    real_fit, real_shard = runs.fit, distributed.shard

    def keeping_weights(key: str):
        def fit_and_keep_weights(training, *args, **kwargs):
            before = weights(training)
            history = real_fit(training, *args, **kwargs)
            found.setdefault(key, []).append(
                {"before": before, "after": weights(training), "history": [dict(r) for r in history]}
            )
            return history

        return fit_and_keep_weights

    def shard_and_keep_sum(tensor, *args, **kwargs):
        part = real_shard(tensor, *args, **kwargs)
        if part is not None and part.is_floating_point():
            found["shard_sums"].append(float(part.double().sum()))
        return part

    runs.fit, distributed.shard = keeping_weights("ae_runs"), shard_and_keep_sum
    code = cli.main(["train", "ae", "--epochs", "1", "--out", str(out / "ae"), "--no-progress"])
    if code != 0:
        return code
    cfg = ae.AESettings(epochs=2)  # the same run, extended: resumes from the checkpoint
    run, dev = runs.start_run("ae", cfg.seed, out / "ae", "cpu")
    training = ae.AutoencoderTraining(ae.Autoencoder(cfg.latent_dim, cfg.hidden).to(dev), lr=cfg.lr)
    runs.fit_in_run(run, training, data.load_mnist(dev, verbose=False), cfg, progress=False)
    runs.fit = real_fit

    environment.seed_everything(0)
    mnist = data.load_mnist("cpu", verbose=False)
    training = gan.GANTraining(*gan_nets.mlp_gan())
    found["gan_before"] = weights(training)
    loop.fit(training, mnist.train_x[:512], epochs=1, batch_size=64, progress=False)  # 4 steps per rank
    found["gan_after"] = weights(training)

    environment.seed_everything(0)
    cfg = CGANSettings(loss="wgan-gp", n_critic=2)
    training = cfg.training(*cfg.networks())
    found["wgan_before"] = weights(training)
    x, y = mnist.train_x[:512], mnist.train_y[:512]
    loop.fit(training, x, epochs=1, batch_size=64, progress=False, train_y=y)  # 4 critic, 2 G steps per rank
    found["wgan_after"] = weights(training)
    code = cli.main(["train", "gan", "--epochs", "1", "--out", str(out / "gan"), "--no-progress"])
    if code != 0:
        return code

    tiny = {"width": 8, "mults": (1, 2), "sample_steps": 2, "conditional": True, "batch_size": 32, "epochs": 1}
    few = dataclasses.replace(
        mnist, train_x=x[:128], train_y=y[:128], test_x=mnist.test_x[:64], test_y=mnist.test_y[:64]
    )  # 64 images a rank: 2 steps each
    runs.fit = keeping_weights("diffusion_runs")
    with distributed.quiet_unless_main():  # as the command line runs a recipe
        run_diffusion(DiffusionSettings(**tiny), out=out / "diffusion", device="cpu", progress=False, data=few)
    runs.fit = real_fit
    environment.seed_everything(0)
    training = DiffusionSettings(**tiny, ema=0).training()  # the average is the weights after every step
    loop.fit(training, few.train_x, epochs=1, batch_size=32, progress=False, train_y=few.train_y)
    found["diffusion_ema0"] = {"net": training.net.state_dict(), "ema": training.ema.module.state_dict()}
    torch.save(found, out / f"rank{distributed.rank()}.pt")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main(Path(sys.argv[1])))
