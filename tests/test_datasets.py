"""``labkit.datasets``: every dataset by name (Fashion-MNIST and KMNIST read back exactly from tiny IDX
copies the tests write, the offline error, resizing, a folder of images), and the AE, VAE, cVAE and
VQ-VAE recipes on them (``--dataset``, ``--image-size``), with the convolutional networks they pick."""

import gzip
import json
import math

import numpy as np
import pytest
import torch

from labkit import data, datasets
from labkit.__main__ import main
from labkit.ae import AESettings, Autoencoder, ConvAutoencoder, run_ae
from labkit.engine import checkpoint as ckpt
from labkit.gan.recipe import GANSettings
from labkit.vae import VAE, ConvVAE, VAESettings, vae_run_name
from labkit.vae.cvae import CVAESettings
from labkit.vae.vqvae import VQVAESettings

N_TRAIN, N_TEST = 60, 20

# ---------------------------------------------------------------- helpers: tiny datasets written to tmp_path


def write_idx(path, array: np.ndarray, compress: bool):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if compress else open)(path.with_name(path.name + (".gz" if compress else "")), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def known_arrays(constant: int | None = None) -> dict[str, np.ndarray]:
    """Image i of a split has pixel (r, c) = (7 i + r + 2 c) % 256 (or ``constant``); label i % 10."""

    def images(n, offset):
        i, r, c = np.meshgrid(np.arange(n) + offset, np.arange(28), np.arange(28), indexing="ij")
        return np.full((n, 28, 28), constant) if constant is not None else (7 * i + r + 2 * c) % 256

    return {
        "train_x": images(N_TRAIN, 0),
        "train_y": np.arange(N_TRAIN) % 10,
        "test_x": images(N_TEST, 1000),
        "test_y": (np.arange(N_TEST) + 3) % 10,
    }


def write_copy(root, folder="FashionMNIST", compress=False, constant=None) -> dict[str, np.ndarray]:
    """A torchvision-layout copy ``root/<folder>/raw/*-ubyte[.gz]`` of ``known_arrays``."""
    arrays = known_arrays(constant)
    for key, stem in data.MNIST_FILES.items():
        write_idx(root / folder / "raw" / stem, arrays[key], compress)
    return arrays


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def write_folder(folder, n=12, side=40) -> list[tuple[int, int, int]]:
    """``n`` PNGs of one colour each (a third in a subfolder, a few not square); returns the colours."""
    from PIL import Image

    colours = [COLOURS[i % len(COLOURS)] for i in range(n)]
    for i, colour in enumerate(colours):
        path = folder / ("sub" if i % 3 == 0 else "") / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (side + 8 * (i % 2), side), colour).save(path)
    return colours


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("LABKIT_DATA", str(root))
    return root


# ---------------------------------------------------------------- Fashion-MNIST and KMNIST


@pytest.mark.parametrize(
    "name, folder, title, compress",
    [("fashion-mnist", "FashionMNIST", "Fashion-MNIST", False), ("kmnist", "KMNIST", "KMNIST", True)],
)
def test_an_mnist_like_copy_is_read_back_exactly(data_root, name, folder, title, compress):
    arrays = write_copy(data_root, folder, compress)
    d = datasets.load_dataset(name, verbose=False)
    assert (d.name, d.source, d.label) == (title, "local", title)
    assert d.origin == str(data_root / folder / "raw")
    assert d.train_x.shape == (N_TRAIN, 1, 28, 28) and d.test_x.shape == (N_TEST, 1, 28, 28)
    assert torch.equal(d.train_x, torch.from_numpy(arrays["train_x"]).float().unsqueeze(1) / 255)
    assert torch.equal(d.test_x, torch.from_numpy(arrays["test_x"]).float().unsqueeze(1) / 255)
    assert torch.equal(d.train_y, torch.arange(N_TRAIN) % 10)
    assert torch.equal(d.test_y, (torch.arange(N_TEST) + 3) % 10)
    assert round(d.train_x[1, 0, 2, 3].item() * 255) == 7 * 1 + 2 + 2 * 3  # image 1, row 2, column 3


def test_smoke_mode_cuts_an_mnist_like_copy_to_a_stratified_subset(data_root, monkeypatch):
    write_copy(data_root, "KMNIST")
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setattr(data, "SMOKE_SIZES", (30, 10))
    d = datasets.load_dataset("kmnist", verbose=False)
    assert (d.n_train, d.n_test) == (30, 10)
    assert torch.bincount(d.train_y).tolist() == [3] * 10


def test_offline_a_missing_fashion_mnist_says_where_to_put_which_files(data_root):
    with pytest.raises(FileNotFoundError) as error:
        datasets.load_dataset("fashion-mnist", verbose=False)
    message = str(error.value)
    assert message.startswith("Fashion-MNIST unavailable offline")
    assert str(data_root / "FashionMNIST" / "raw") in message
    assert "downloads are switched off (LABKIT_OFFLINE)" in message
    for name in data.MNIST_FILES.values():
        assert name in message
    assert "Run once with internet access" in message


def test_a_failed_download_of_kmnist_is_bounded_and_reported(data_root, monkeypatch):
    import socket

    import torchvision.datasets

    timeouts = []

    class Unreachable:
        def __init__(self, *args, **kwargs):
            timeouts.append(socket.getdefaulttimeout())
            raise OSError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "KMNIST", Unreachable)
    monkeypatch.setenv("LABKIT_OFFLINE", "0")
    with pytest.raises(FileNotFoundError, match=r"KMNIST unavailable offline.*download failed \(OSError: Network"):
        datasets.load_dataset("kmnist", verbose=False)
    assert timeouts and 0 < timeouts[0] <= 10 and socket.getdefaulttimeout() is None


# ---------------------------------------------------------------- names, resizing, folders


def test_an_unknown_name_that_is_no_folder_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'svhn': choose mnist, fashion-mnist, kmnist, cifar10"):
        datasets.load_dataset("svhn")
    with pytest.raises(ValueError, match="path of a folder of images"):
        AESettings(dataset=str(tmp_path / "no-such-folder"))


def test_image_size_resizes_a_constant_image_to_the_same_constant_and_keeps_the_labels(data_root):
    write_copy(data_root, constant=51)
    d = datasets.load_dataset("fashion-mnist", image_size=32, verbose=False)
    assert d.train_x.shape == (N_TRAIN, 1, 32, 32) and d.test_x.shape == (N_TEST, 1, 32, 32)
    assert torch.allclose(d.train_x, torch.full_like(d.train_x, 0.2), atol=1e-6)
    assert torch.equal(d.train_y, torch.arange(N_TRAIN) % 10)
    assert "resized from 28x28 to 32x32" in d.origin
    same = datasets.load_dataset("fashion-mnist", image_size=28, verbose=False)
    assert same.origin == str(data_root / "FashionMNIST" / "raw")  # its own size: nothing resized


def test_a_folder_of_images_loads_as_rgb_without_labels_with_a_held_out_split(data_root, tmp_path):
    colours = write_folder(tmp_path / "My Pictures")
    d = datasets.load_dataset(str(tmp_path / "My Pictures"), image_size=32, verbose=False)
    assert (d.name, d.source, d.label) == ("My Pictures", "folder", "My Pictures (folder)")
    assert (d.n_train, d.n_test) == (10, 2) and d.image_shape == (3, 32, 32)
    assert d.train_y is None and d.test_y is None
    seen = sorted(
        tuple(round(v * 255) for v in image[:, 16, 16].tolist()) for image in torch.cat([d.train_x, d.test_x])
    )
    assert seen == sorted(colours)  # every image once, in train or test
    for image in d.train_x:  # one colour each, whatever the crop and scaling
        assert torch.allclose(image, image[:, :1, :1].expand_as(image), atol=1 / 255)
    everything = datasets.load_dataset(str(tmp_path / "My Pictures"), held_out=0, verbose=False)
    assert (everything.n_train, everything.n_test, everything.image_shape) == (12, 0, (3, 64, 64))


def test_run_names_keep_mnist_runs_and_add_the_dataset_otherwise(tmp_path):
    (tmp_path / "My Cats!").mkdir()
    assert [AESettings().run_name, vae_run_name(VAESettings()), CVAESettings().run_name, VQVAESettings().run_name] == [
        "ae",
        "vae",
        "cvae",
        "vqvae",
    ]
    assert AESettings(dataset="fashion-mnist").run_name == "ae-fashion-mnist"
    assert AESettings(dataset="mnist", image_size=28).run_name == "ae"
    assert AESettings(dataset=str(tmp_path / "My Cats!"), image_size=32).run_name == "ae-folder-my-cats-32px"
    assert vae_run_name(VAESettings(dataset="cifar10", variant="latent2", beta=4)) == "vae-cifar10-latent2-beta4"
    assert CVAESettings(dataset="kmnist", beta=1).run_name == "cvae-kmnist-beta1"
    assert VQVAESettings(dataset="abstract-art", image_size=32).run_name == "vqvae-abstract-art-32px"


# ---------------------------------------------------------------- the networks


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 64, 64), (1, 32, 32), (3, 28, 28)])
def test_the_convolutional_ae_and_vae_give_images_of_the_input_shape(shape):
    x = torch.rand(4, *shape)
    ae = ConvAutoencoder(latent_dim=16, image_shape=shape)
    out = ae(x)
    assert out.shape == (4, *shape) and 0 <= out.min() and out.max() <= 1
    assert ae.encode(x).shape == (4, 16)
    vae = ConvVAE(latent_dim=8, image_shape=shape)
    logits, mu, logvar = vae(x)
    assert logits.shape == (4, *shape) and mu.shape == logvar.shape == (4, 8)
    assert vae.sample(3).shape == (3, *shape)


def test_1x28x28_images_keep_the_course_mlp_and_other_shapes_get_convolutions():
    assert type(AESettings().training().model) is Autoencoder
    assert type(AESettings(dataset="fashion-mnist").training().model) is Autoencoder
    assert type(VAESettings(dataset="kmnist").training().model) is VAE
    assert type(AESettings(dataset="cifar10").training().model) is ConvAutoencoder
    assert type(VAESettings(image_size=64).training().model) is ConvVAE
    assert VAESettings(variant="latent2", dataset="cifar10").training().model.latent_dim == 2
    assert VQVAESettings(dataset="abstract-art").training().model.grid == (16, 16)
    assert CVAESettings(dataset="cifar10").training().model.image_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="multiples of 4 and at least 16 pixels"):
        AESettings(dataset="cifar10", image_size=30)


def test_a_notebook_class_without_image_shape_is_refused_for_colour_images():
    class NotebookAE(torch.nn.Module):
        def __init__(self, latent_dim=32, hidden=(512, 256)):
            super().__init__()

    with pytest.raises(ValueError, match="NotebookAE is built for 1x28x28 images and these are 3x32x32"):
        AESettings(dataset="cifar10").training(model_class=NotebookAE)


def test_32x32_images_train_the_default_ae_recipe(tmp_path):
    # Before: "Autoencoder expects images of shape (batch, 1, 28, 28), got (10, 1, 32, 32). Reshape with x.view(...)"
    g = torch.Generator().manual_seed(0)
    images = data.ImageData("gray 32", "test", "tmp", torch.rand(40, 1, 32, 32, generator=g), torch.rand(20, 1, 32, 32))
    trained = run_ae(AESettings(epochs=1), out=tmp_path / "run", device="cpu", progress=False, data=images)
    assert type(trained.training.model) is ConvAutoencoder
    assert math.isfinite(trained.final["test_mse"]) and "latent_tsne" not in trained.metrics["figures"]


# ---------------------------------------------------------------- the command line


def test_train_ae_on_a_folder_of_images_at_32_pixels(data_root, tmp_path):
    write_folder(tmp_path / "pics")
    args = ["train", "ae", "--dataset", str(tmp_path / "pics"), "--image-size", "32", "--epochs", "2"]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 0
    record = json.loads((tmp_path / "runs" / "ae-folder-pics-32px" / "metrics.json").read_text())
    assert record["dataset"]["name"] == "pics" and record["dataset"]["source"] == "folder"
    assert record["hyperparameters"]["dataset"] == str(tmp_path / "pics")
    assert record["hyperparameters"]["image_size"] == 32 and len(record["history"]) == 2
    assert math.isfinite(record["final"]["test_mse"])
    assert {"reconstructions", "random_codes"} <= set(record["figures"]) and "latent_tsne" not in record["figures"]


def test_train_vae_on_fashion_mnist(data_root, tmp_path):
    write_copy(data_root, "FashionMNIST", compress=True)
    assert (
        main(["train", "vae", "--dataset", "fashion-mnist", "--epochs", "2", "--device", "cpu", "--no-progress"]) == 0
    )
    record = json.loads((tmp_path / "runs" / "vae-fashion-mnist" / "metrics.json").read_text())
    assert record["dataset"]["name"] == "Fashion-MNIST" and record["dataset"]["n_train"] == N_TRAIN
    assert math.isfinite(record["final"]["test_neg_elbo_nats"]) and record["final"]["test_neg_elbo_nats"] > 0
    assert {"reconstructions", "prior_samples", "interpolation"} <= set(record["figures"])


def test_a_cvae_on_a_folder_is_refused_before_any_training(tmp_path, capsys):
    write_folder(tmp_path / "pics", n=3)
    with pytest.raises(ValueError, match="needs a class label for every image, and .*pics has none"):
        CVAESettings(dataset=str(tmp_path / "pics"))
    assert main(["train", "cvae", "--dataset", str(tmp_path / "pics"), "--device", "cpu"]) == 2
    assert "train the plain VAE" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- old checkpoints


def test_a_checkpoint_saved_before_dataset_and_image_size_existed_still_resumes(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = data.ImageData(
        "MNIST", "test", "tmp", torch.rand(64, 1, 28, 28, generator=g), torch.rand(20, 1, 28, 28, generator=g),
        torch.arange(64) % 10, torch.arange(20) % 10,
    )  # fmt: skip
    out = tmp_path / "run"
    run_ae(AESettings(epochs=1), out=out, device="cpu", progress=False, data=images)
    state = ckpt.safe_load(out / ckpt.FILE_NAME)
    for key in ("dataset", "image_size"):  # as an older labkit wrote it
        del state["run"]["config"][key]
    ckpt.atomic_save(state, out / ckpt.FILE_NAME)
    resumed = run_ae(AESettings(epochs=2), out=out, device="cpu", progress=False, data=images)
    assert len(resumed.history) == 2 and resumed.history[0] == state["history"][0]
    with pytest.raises(ckpt.CheckpointError, match="saved with dataset='mnist', this run has dataset='kmnist'"):
        run_ae(AESettings(epochs=3, dataset="kmnist"), out=out, device="cpu", progress=False, data=images)


def test_a_folder_too_small_to_hold_out_a_test_split_is_refused_clearly(data_root, tmp_path):
    write_folder(tmp_path / "two", n=2)
    with pytest.raises(ValueError, match="cannot hold out 2 of the 2 images of two for testing"):
        datasets.load_dataset(str(tmp_path / "two"), verbose=False)


@pytest.mark.filterwarnings("ignore:.*codes used")  # a 1-epoch VQ-VAE on 10 images leaves most codes dead
def test_train_vqvae_on_colour_images_and_cvae_on_kmnist(data_root, tmp_path, monkeypatch):
    write_folder(tmp_path / "pics")
    write_copy(data_root, "KMNIST")
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    common = ["--epochs", "1", "--device", "cpu", "--no-progress"]
    assert main(["train", "vqvae", "--dataset", str(tmp_path / "pics"), "--image-size", "32", *common]) == 0
    assert main(["train", "cvae", "--dataset", "kmnist", *common]) == 0
    vq = json.loads((tmp_path / "runs" / "vqvae-folder-pics-32px" / "metrics.json").read_text())
    assert math.isfinite(vq["final"]["test_mse"]) and vq["dataset"]["source"] == "folder"
    cvae = json.loads((tmp_path / "runs" / "cvae-kmnist" / "metrics.json").read_text())
    assert cvae["dataset"]["name"] == "KMNIST" and 0 <= cvae["final"]["conditional_accuracy"] <= 1


# ---------------------------------------------------------------- the GANs


def test_train_gan_and_cgan_on_fashion_mnist_build_their_mlps_for_it_and_judge_by_its_classifier(data_root, tmp_path):
    write_copy(data_root, "FashionMNIST")
    for model in ("gan", "cgan"):
        args = ["train", model, "--dataset", "fashion-mnist", "--epochs", "1", "--device", "cpu", "--no-progress"]
        assert main(args) == 2  # 60 images, fewer than one batch of 64: said before any step
        assert main([*args, "--batch-size", "16"]) == 0
        record = json.loads((tmp_path / "runs" / f"{model}-fashion-mnist" / "metrics.json").read_text())
        assert record["dataset"]["name"] == "Fashion-MNIST" and record["dataset"]["n_train"] == N_TRAIN
        assert 0 <= record["final"]["class_coverage"] <= 10  # the classifier trained on its ten classes
    assert 0 <= record["final"]["conditional_accuracy"] <= 1


def test_train_dcgan_on_a_folder_resizes_to_its_size_and_gan_builds_the_mlp_for_colour(data_root, tmp_path):
    write_folder(tmp_path / "pics", n=12, side=40)
    folder = str(tmp_path / "pics")
    args = ["--dataset", folder, "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
    assert main(["train", "dcgan", *args, "--no-progress"]) == 0
    record = json.loads((tmp_path / "runs" / "dcgan-folder-pics-32px" / "metrics.json").read_text())
    assert record["dataset"]["n_train"] == 12 and record["hyperparameters"]["image_size"] == 32  # all train a GAN
    assert "fid_classifier" not in record["final"]  # no labels: no digit classifier
    G, D = GANSettings(dataset=folder, image_size=32).networks()
    assert G(torch.randn(2, 100)).shape == (2, 3, 32, 32) and D(torch.rand(2, 3, 32, 32)).shape == (2,)


def test_a_cgan_on_a_folder_is_refused_with_what_to_train_instead(tmp_path, capsys):
    write_folder(tmp_path / "pics", n=3)
    assert main(["train", "cgan", "--dataset", str(tmp_path / "pics"), "--device", "cpu"]) == 2
    assert "needs a label for every image" in capsys.readouterr().err and not (tmp_path / "runs").exists()
