"""labkit's data path against the usual DataLoader pipeline, side by side in one run.

    python benchmarks/pipeline.py [--epochs 3] [--dcgan-steps 10] [--device cpu]

For each model, the same training (same train step, model, optimiser, batch size) trains on the
same MNIST images through (a) labkit: one resident tensor sliced by a shuffled index inside
``labkit.engine.loop.fit``, and (b) the usual pipeline: torchvision's ``datasets.MNIST`` with
``ToTensor()`` per sample and a ``torch.utils.data.DataLoader`` (workers as pytorch/examples uses
them: 1 with CUDA, none on the CPU). Seconds per epoch are the median of the epochs after the
first (warm-up). Then the DCGAN at 64x64 on the abstract-art stand-in (or the gallery, when
labkit finds it): (a) resident images through ``fit`` against (b) the same images as PNG files
read by ``datasets.ImageFolder`` with Resize, CenterCrop, ToTensor and Normalize per sample
(2 workers, as pytorch/examples' dcgan), ``--dcgan-steps`` steps each after one warm-up step.
Prints one JSON line per measurement, with its peak memory (``common.PeakMemory`` says what
that is on each device), and one per ratio (b)/(a).
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import PeakMemory, write_mnist
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from labkit import ae, art, data, gan, vae
from labkit.engine import environment, loop
from labkit.gan import nets as gan_nets


def torchvision_mnist(mnist: data.ImageData, root: Path) -> datasets.MNIST:
    """The same images as a real ``torchvision.datasets.MNIST`` (IDX files written to ``root``)."""
    write_mnist(mnist, root)
    return datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())


def labkit_epochs(training, x, batch_size, epochs):
    history = loop.fit(training, x, epochs=epochs, batch_size=batch_size, progress=False)
    return history.series("seconds")


def dataloader_epochs(training, dataset, batch_size, epochs, dev):
    workers = 1 if dev.type == "cuda" else 0
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        drop_last=training.drop_last,
    )
    seconds = []
    for _ in range(epochs):
        for module in training.modules.values():
            module.train()
        start = time.perf_counter()
        for x, _ in loader:
            training.train_step(x.to(dev, non_blocking=True))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def image_folder(images: torch.Tensor, root: Path, size: int) -> datasets.ImageFolder:
    """``images`` (N, 3, H, W) in [0, 1] as PNG files in ``root/art/`` (ImageFolder wants a class
    folder), read back as pytorch/examples' dcgan reads a folder of images: to [-1, 1]."""
    folder = root / "art"
    folder.mkdir(parents=True)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i, array in enumerate(pixels):
        Image.fromarray(array).save(folder / f"{i:05d}.png")
    return datasets.ImageFolder(
        str(root),
        transform=transforms.Compose(
            [
                transforms.Resize(size),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        ),
    )


def dcgan_steps_per_second(args, dev) -> None:
    """The DCGAN at 64x64: resident images through ``fit`` against ImageFolder + DataLoader."""
    batch_size, steps = args.dcgan_batch_size, args.dcgan_steps
    art_data = art.load_abstract_art(dev, size=64, n_images=batch_size * steps, smoke=False)
    images = art_data.train_x
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = image_folder(images, Path(tmp), 64)
        for pipeline in ("labkit", "imagefolder"):
            environment.seed_everything(0)
            training = gan.GANTraining(*[m.to(dev) for m in gan_nets.dcgan(64, 3)], real_label=0.9)
            training.train_step(images[:batch_size])  # warm-up step, outside the timing
            with PeakMemory(dev) as peak:
                if pipeline == "labkit":
                    seconds = labkit_epochs(training, images, batch_size, 1)[0]
                else:
                    loader = DataLoader(
                        folder,
                        batch_size=batch_size,
                        shuffle=True,
                        drop_last=True,
                        num_workers=args.dcgan_workers,
                        pin_memory=dev.type == "cuda",
                    )
                    for module in training.modules.values():
                        module.train()
                    start = time.perf_counter()
                    for x, _ in loader:  # GANTraining takes [0, 1] images: undo Normalize's [-1, 1]
                        training.train_step(x.to(dev, non_blocking=True).add_(1).div_(2))
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    seconds = time.perf_counter() - start
            rates[pipeline] = steps / seconds
            print(
                json.dumps(
                    {
                        "model": "dcgan-64",
                        "pipeline": pipeline,
                        "device": str(dev),
                        "batch_size": batch_size,
                        "steps": steps,
                        "dataset": art_data.label,
                        "steps_per_second": round(rates[pipeline], 3),
                        "workers": args.dcgan_workers if pipeline == "imagefolder" else 0,
                        **peak.fields(),
                    }
                ),
                flush=True,
            )
    print(
        json.dumps(
            {
                "model": "dcgan-64",
                "ratio_labkit_over_imagefolder_steps_per_second": round(rates["labkit"] / rates["imagefolder"], 2),
            }
        ),
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per MNIST measurement (the first is warm-up)")
    parser.add_argument("--dcgan-steps", type=int, default=10, help="timed DCGAN steps per pipeline (0: skip)")
    parser.add_argument("--dcgan-batch-size", type=int, default=64)
    parser.add_argument("--dcgan-workers", type=int, default=2, help="DataLoader workers of the ImageFolder side")
    parser.add_argument(
        "--models",
        default="vae-classic,ae-default,gan-mlp",
        help="MNIST measurements to run, comma-separated (empty: none)",
    )
    parser.add_argument("--n-train", type=int, default=None, help="train on the first N MNIST images only")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    mnist = data.load_mnist(dev, smoke=False)
    if args.n_train is not None:
        mnist.train_x, mnist.train_y = mnist.train_x[: args.n_train], mnist.train_y[: args.n_train]
    cases = [
        ("vae-classic", lambda: vae.VAETraining(vae.make_vae("classic").to(dev)), 128),
        ("ae-default", lambda: ae.AutoencoderTraining(ae.Autoencoder().to(dev)), 32),
        ("gan-mlp", lambda: gan.GANTraining(*[m.to(dev) for m in gan_nets.mlp_gan()]), 64),
    ]
    cases = [case for case in cases if case[0] in args.models.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        dataset = torchvision_mnist(mnist, Path(tmp))
        for name, build, batch_size in cases:
            medians = {}
            for pipeline in ("labkit", "dataloader"):
                environment.seed_everything(0)
                training = build()
                with PeakMemory(dev) as peak:
                    if pipeline == "labkit":
                        seconds = labkit_epochs(training, mnist.train_x, batch_size, args.epochs)
                    else:
                        seconds = dataloader_epochs(training, dataset, batch_size, args.epochs, dev)
                medians[pipeline] = statistics.median(seconds[1:] or seconds)
                print(
                    json.dumps(
                        {
                            "model": name,
                            "pipeline": pipeline,
                            "device": str(dev),
                            "batch_size": batch_size,
                            "n_train": mnist.n_train,
                            "dataset": mnist.source,
                            "seconds_per_epoch": round(medians[pipeline], 4),
                            "epochs_seconds": [round(s, 4) for s in seconds],
                            **peak.fields(),
                        }
                    ),
                    flush=True,
                )
            print(
                json.dumps(
                    {"model": name, "ratio_dataloader_over_labkit": round(medians["dataloader"] / medians["labkit"], 2)}
                ),
                flush=True,
            )
    if args.dcgan_steps > 0:
        dcgan_steps_per_second(args, dev)


if __name__ == "__main__":
    main()
