"""Test-set quality of the course's MNIST models at 10 and 20 epochs, one JSON line per model.

    python benchmarks/quality.py [--epochs 20] [--device cpu]

Trains the AE (kit default and seed widths) and every VAE variant on whatever MNIST labkit
finds (the offline subset without network), next to the PCA baseline and the classic
pytorch/examples VAE recipe (784-400-20, Adam 1e-3, batch 128), all with the same seed.
"""

import argparse
import json
import time

import numpy as np
from sklearn.decomposition import PCA

from labkit import data, models
from labkit.ae import AESettings
from labkit.engine import environment, loop
from labkit.vae import VAESettings


def report(name, history, key, seconds, **extra):
    row = {
        "model": name,
        "metric": key,
        **extra,
        "seconds": round(seconds, 1),
        "by_epoch": {r["epoch"]: round(r[key], 5) for r in history if r["epoch"] in (1, 5, 10, 20, 40)},
    }
    print(json.dumps(row), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    mnist = data.load_mnist(dev, smoke=False)
    train_np = mnist.train_x.flatten(1).cpu().numpy()
    test_np = mnist.test_x.flatten(1).cpu().numpy()
    pca = PCA(32).fit(train_np)
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(test_np)) - test_np) ** 2))
    print(
        json.dumps(
            {
                "model": "pca-32",
                "metric": "test_loss (MSE per pixel)",
                "value": round(pca_mse, 5),
                "dataset": mnist.source,
            }
        ),
        flush=True,
    )

    ae = AESettings()
    runs = [
        ("ae-default", lambda: ae.Autoencoder(hidden=ae.hidden), ae.AutoencoderTraining, ae.batch_size, ae.lr),
        (
            "ae-narrow",
            lambda: ae.Autoencoder(hidden=models.NARROW_HIDDEN),
            ae.AutoencoderTraining,
            ae.batch_size,
            ae.lr,
        ),
    ]
    vae = VAESettings()
    for variant in vae.VAE_VARIANTS:
        runs.append((f"vae-{variant}", lambda v=variant: vae.make_vae(v), vae.VAETraining, vae.batch_size, vae.lr))
    runs.append(("vae-classic-pytorch-examples-recipe", lambda: vae.make_vae("classic"), vae.VAETraining, 128, 1e-3))
    for name, build, training_class, batch_size, lr in runs:
        environment.seed_everything(args.seed)
        training = training_class(build().to(dev), lr=lr)
        start = time.perf_counter()
        history = loop.fit(
            training, mnist.train_x, mnist.test_x, epochs=args.epochs, batch_size=batch_size, progress=False
        )
        key = "test_loss" if name.startswith("ae") else "test_neg_elbo"
        report(
            name,
            history,
            key,
            time.perf_counter() - start,
            batch_size=batch_size,
            lr=lr,
            dataset=mnist.source,
            device=str(dev),
        )


if __name__ == "__main__":
    main()
