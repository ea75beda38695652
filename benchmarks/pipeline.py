"""labkit's data path against the usual DataLoader pipeline, side by side in one run.

    python benchmarks/pipeline.py [--epochs 3] [--device cpu]

For each model, the same objective (same train step, model, optimiser, batch size) trains on the
same MNIST images through (a) labkit: one resident tensor sliced by a shuffled index inside
``labkit.train.fit``, and (b) the usual pipeline: torchvision's ``datasets.MNIST`` with
``ToTensor()`` per sample and a ``torch.utils.data.DataLoader`` (workers as pytorch/examples uses
them: 1 with CUDA, none on the CPU). Prints one JSON line per measurement and one per ratio (b)/(a).
Seconds per epoch are the median of the epochs after the first (warm-up).
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from labkit import data, device, gan, models, train


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def torchvision_mnist(mnist: data.ImageData, root: Path) -> datasets.MNIST:
    """The same images as a real ``torchvision.datasets.MNIST`` (IDX files written to ``root``)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = (mnist.train_x * 255).round().to(torch.uint8).squeeze(1).cpu().numpy()
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", mnist.train_y.cpu().numpy())
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # torchvision checks all four exist
        (raw / name).write_bytes((raw / name.replace("t10k", "train")).read_bytes())
    return datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())


def labkit_epochs(objective, x, batch_size, epochs):
    history = train.fit(objective, x, epochs=epochs, batch_size=batch_size, progress=False)
    return history.series("seconds")


def dataloader_epochs(objective, dataset, batch_size, epochs, dev):
    workers = 1 if dev.type == "cuda" else 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        pin_memory=dev.type == "cuda", drop_last=objective.drop_last)
    seconds = []
    for _ in range(epochs):
        for module in objective.modules.values():
            module.train()
        start = time.perf_counter()
        for x, _ in loader:
            objective.train_step(x.to(dev, non_blocking=True))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def peak_memory_mb(dev) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    dev = device.pick_device(args.device)
    mnist = data.load_mnist(dev, smoke=False)
    cases = [
        ("vae-classic", lambda: train.VAEObjective(models.make_vae("classic").to(dev)), 128),
        ("ae-default", lambda: train.AutoencoderObjective(models.Autoencoder().to(dev)), 32),
        ("gan-mlp", lambda: gan.GANObjective(*[m.to(dev) for m in gan.mlp_gan()]), 64),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        dataset = torchvision_mnist(mnist, Path(tmp))
        for name, build, batch_size in cases:
            medians = {}
            for pipeline in ("labkit", "dataloader"):
                device.seed_everything(0)
                objective = build()
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                if pipeline == "labkit":
                    seconds = labkit_epochs(objective, mnist.train_x, batch_size, args.epochs)
                else:
                    seconds = dataloader_epochs(objective, dataset, batch_size, args.epochs, dev)
                medians[pipeline] = statistics.median(seconds[1:] or seconds)
                print(json.dumps({"model": name, "pipeline": pipeline, "device": str(dev), "batch_size": batch_size,
                                  "n_train": mnist.n_train, "dataset": mnist.source,
                                  "seconds_per_epoch": round(medians[pipeline], 4),
                                  "epochs_seconds": [round(s, 4) for s in seconds],
                                  "peak_gpu_memory_mb": peak_memory_mb(dev)}), flush=True)
            print(json.dumps({"model": name, "ratio_dataloader_over_labkit":
                              round(medians["dataloader"] / medians["labkit"], 2)}), flush=True)


if __name__ == "__main__":
    main()
