"""The one training loop: it learns, it records epoch means, it stops on nonsense."""

import math

import pytest
import torch

from labkit.ae import Autoencoder, AutoencoderTraining
from labkit.engine import environment
from labkit.engine.loop import evaluate, fit
from labkit.engine.training import History, Precision, seconds_per_epoch
from labkit.gan import nets as gan_nets
from labkit.vae import VAETraining, make_vae


def test_one_epoch_lowers_the_autoencoder_test_loss_clearly(mnist_offline):
    environment.seed_everything(0)
    training = AutoencoderTraining(Autoencoder(), lr=2e-3)
    before = evaluate(training, mnist_offline.test_x)["loss"]
    history = fit(training, mnist_offline.train_x, mnist_offline.test_x, epochs=1, batch_size=32, progress=False)
    after = history.last["test_loss"]
    assert before > 0.1  # an untrained decoder outputs ~0.5 everywhere
    assert after < 0.7 * before


def test_one_epoch_lowers_the_vae_negative_elbo_clearly(mnist_offline):
    environment.seed_everything(0)
    training = VAETraining(make_vae("default"), lr=2e-3)
    torch.manual_seed(0)
    before = evaluate(training, mnist_offline.test_x)["neg_elbo"]
    history = fit(training, mnist_offline.train_x, mnist_offline.test_x, epochs=1, batch_size=32, progress=False)
    record = history.last
    assert before > 500  # ~784 * log 2 nats for a decoder that says 0.5 everywhere
    assert record["test_neg_elbo"] < 0.5 * before
    assert record["test_neg_elbo"] == pytest.approx(record["test_recon"] + record["test_kl"], rel=1e-5)
    assert record["train_kl"] > 0


def test_history_records_epoch_means_and_continues_numbering(mnist_offline):
    x = mnist_offline.train_x[:256]
    training = AutoencoderTraining(Autoencoder())
    history = fit(training, x, x[:64], epochs=2, batch_size=64, progress=False)
    history = fit(training, x, x[:64], epochs=1, batch_size=64, history=history, progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert set(history[0]) >= {"epoch", "seconds", "train_loss", "test_loss", "test_bce"}
    assert history.series("train_loss") == [r["train_loss"] for r in history]


def test_train_loss_is_the_mean_over_the_epoch_not_the_last_batch():
    class Recorder:
        name, drop_last = "recorder", False

        def __init__(self):
            self.modules = {"m": torch.nn.Identity()}

        def train_step(self, x):
            return {"loss": x.float().mean()}

        def eval_step(self, x):
            return {"loss": x.float().mean()}

    x = torch.arange(10.0).view(10, 1, 1, 1) / 10  # batches of 4, 4, 2: mean over images must be 0.45
    history = fit(Recorder(), x, x, epochs=1, batch_size=4, progress=False)
    assert history.last["train_loss"] == pytest.approx(0.45)  # the last batch alone: 0.85
    assert history.last["test_loss"] == pytest.approx(0.45)


def test_evaluate_does_not_depend_on_batch_size(mnist_offline):
    training = AutoencoderTraining(Autoencoder())
    x = mnist_offline.test_x[:300]
    small, large = evaluate(training, x, batch_size=7), evaluate(training, x, batch_size=1000)
    assert small["loss"] == pytest.approx(large["loss"], rel=1e-5)


def test_same_seed_same_history(mnist_offline):
    x = mnist_offline.train_x[:512]
    runs = []
    for _ in range(2):
        environment.seed_everything(123)
        runs.append(fit(AutoencoderTraining(Autoencoder()), x, x[:128], epochs=2, batch_size=64, progress=False))
    assert runs[0].series("test_loss") == runs[1].series("test_loss")


def test_images_with_nan_pixels_are_refused_before_training_naming_the_image():
    x = torch.rand(64, 1, 28, 28)
    x[3, 0, 5, 5] = float("nan")
    x[9, 0, 0, 0] = float("inf")
    with pytest.raises(
        ValueError, match=r"train_x holds 2 image\(s\) with NaN or infinite pixels \(the first is image 3\)"
    ):
        fit(AutoencoderTraining(Autoencoder()), x, epochs=1, batch_size=32, progress=False)


@pytest.mark.parametrize(
    "images, where, message",
    [
        (lambda x: (x * 255).to(torch.uint8), "train", r"train_x holds integer pixels \(torch.uint8\).*divide"),
        (lambda x: x * 255, "train", r"train_x holds pixels from 0 to 25\d.*divide 8-bit images by 255"),
        (lambda x: x * 2 - 1, "test", r"test_x holds pixels from -1 to 1.*\(test_x \+ 1\) / 2"),
    ],
)
def test_images_outside_zero_one_or_of_an_integer_type_are_refused_saying_what_to_do(images, where, message):
    x = torch.rand(64, 1, 28, 28)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 1.0
    train_x, test_x = (images(x), x) if where == "train" else (x, images(x))
    model = Autoencoder()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        fit(AutoencoderTraining(model), train_x, test_x, epochs=1, batch_size=32, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # refused before any step


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": -1, "batch_size": 8}, "epochs must be"),
        ({"epochs": 1, "batch_size": 0}, "batch_size must be"),
    ],
)
def test_bad_loop_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(AutoencoderTraining(Autoencoder()), torch.rand(8, 1, 28, 28), progress=False, **kwargs)


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan")])
def test_bad_learning_rate_is_refused(lr):
    with pytest.raises(ValueError, match="lr must be a positive number"):
        AutoencoderTraining(Autoencoder(), lr=lr)


def test_negative_beta_is_refused():
    with pytest.raises(ValueError, match="beta must be"):
        VAETraining(make_vae(), beta=-1)


def test_zero_epochs_returns_an_empty_history():
    assert (
        fit(AutoencoderTraining(Autoencoder()), torch.rand(8, 1, 28, 28), epochs=0, batch_size=4, progress=False) == []
    )


def test_seconds_per_epoch_leaves_out_the_warm_up_epoch():
    assert seconds_per_epoch(History([{"seconds": 9.0}, {"seconds": 1.0}, {"seconds": 3.0}])) == 2.0
    assert seconds_per_epoch(History([{"seconds": 5.0}])) == 5.0
    assert math.isnan(seconds_per_epoch(History()))


def test_precision_auto_is_float32_without_a_gpu_and_unknown_modes_are_refused():
    assert Precision("cpu").mode == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        Precision("cpu", "half")


def test_bfloat16_training_ends_within_two_percent_of_float32(mnist_offline):
    x, results = mnist_offline.train_x[:1000], {}
    for mode in ("fp32", "bf16"):
        environment.seed_everything(0)
        training = VAETraining(make_vae("classic"), lr=2e-3)
        fit(training, x, epochs=1, batch_size=64, progress=False, precision=mode)
        torch.manual_seed(0)
        results[mode] = evaluate(training, mnist_offline.test_x)["neg_elbo"]
    assert training.precision.mode == "bf16"
    assert results["bf16"] == pytest.approx(results["fp32"], rel=0.02)


def test_compile_compiles_every_module_in_place_once(monkeypatch):
    from labkit import gan

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    G, D = gan_nets.mlp_gan(8)
    training = gan.GANTraining(G, D, latent_dim=8)
    fit(training, torch.rand(64, 1, 28, 28), epochs=1, batch_size=32, progress=False, compile=True)
    assert sorted(compiled) == ["MLPDiscriminator", "MLPGenerator"]
    assert training.modules == {"generator": G, "discriminator": D}  # the same objects: checkpoints keep names
    compiled.clear()
    fit(AutoencoderTraining(Autoencoder()), torch.rand(8, 1, 28, 28), epochs=1, batch_size=8, progress=False)
    assert compiled == []
