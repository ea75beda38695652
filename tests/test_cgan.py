"""The conditional GAN: both networks use the label, the game's steps pass the batch's labels (the
gradient penalty's critic too), the conditional accuracy reads what a generator draws, and the recipe
writes the metrics.json the report reads."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from labkit import gan, metrics
from labkit.__main__ import _parser, main
from labkit.engine import environment
from labkit.engine.loop import fit
from labkit.gan import cgan
from labkit.gan.recipe import CGANSettings, run_cgan
from labkit.gan.wgan import WGANGPTraining, gradient_penalty


@pytest.mark.parametrize("d_conditioning", ["projection", "concat"])
def test_both_networks_see_the_label(d_conditioning):
    torch.manual_seed(0)
    G, D = cgan.conditional_gan(d_conditioning=d_conditioning)
    G.eval()
    z = torch.randn(4, 100)
    threes, sevens = torch.full((4,), 3), torch.full((4,), 7)
    assert G(z, threes).shape == (4, 1, 28, 28)
    assert not torch.allclose(G(z, threes), G(z, sevens))  # same noise, another digit
    x = torch.rand(4, 1, 28, 28)
    assert D(x, threes).shape == (4,)
    assert not torch.allclose(D(x, threes), D(x, sevens))
    assert G.latent_dim == 100 and G.num_classes == 10  # the noise stays 100-d; the label is added beside it
    assert G.net[0].in_features == 110
    if d_conditioning == "concat":
        assert D.net[0].in_features == 794  # the one-hot beside the pixels
    else:
        assert D.features[1].in_features == 784 and D.class_embedding.weight.shape == (10, 256)


def test_the_projection_discriminator_adds_the_class_vector_dotted_with_the_image_features():
    """Miyato & Koyama 2018, eq. 3: D(x, y) = psi(phi(x)) + <embed(y), phi(x)>. With embed(3) = 0 the logit of a
    3 is psi(phi(x)) alone, and with embed(7) = the first unit vector, the 7's logit exceeds it by phi(x)'s first
    feature; two images of different labels in one batch each get their own class's term."""
    torch.manual_seed(0)
    _, D = cgan.conditional_gan()
    with torch.no_grad():
        D.class_embedding.weight.zero_()
        D.class_embedding.weight[7, 0] = 1.0
    x = torch.rand(2, 1, 28, 28)
    phi = D.features(x)
    assert phi.shape == (2, 256)
    realness = D.realness(phi).squeeze(1)
    torch.testing.assert_close(D(x, torch.tensor([3, 3])), realness)
    torch.testing.assert_close(D(x, torch.tensor([7, 3])), realness + torch.stack([phi[0, 0], torch.tensor(0.0)]))
    assert CGANSettings().d_conditioning == "projection" and CGANSettings(d_conditioning="concat").run_name == (
        "cgan-concat"
    )  # the old design's runs never land in the new one's folder
    with pytest.raises(ValueError, match="d_conditioning must be one of projection, concat"):
        CGANSettings(d_conditioning="auxiliary")
    assert _parser().parse_args(["train", "cgan", "--d-conditioning", "concat"]).d_conditioning == "concat"
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "cgan", "--d-conditioning", "auxiliary"])
    assert main(["train", "gan", "--d-conditioning", "concat"]) == 2  # "does not apply to gan": it has no labels


@pytest.mark.parametrize("d_conditioning", ["projection", "concat"])
def test_a_label_of_the_wrong_shape_or_type_is_refused_with_what_was_expected(d_conditioning):
    G, D = cgan.conditional_gan(d_conditioning=d_conditioning)
    with pytest.raises(ValueError, match=r"one class index per image, shape \(4,\), integer"):
        G(torch.randn(4, 100), torch.zeros(4))  # float labels
    with pytest.raises(ValueError, match="one class index per image"):
        D(torch.rand(4, 1, 28, 28), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="one class index per image"):
        D(torch.rand(4, 1, 28, 28), torch.zeros(4))


class Recording(nn.Module):
    """Wraps a network and keeps the labels of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []
        self.latent_dim = getattr(net, "latent_dim", None)

    def forward(self, inputs, labels):
        self.calls.append(labels.clone())
        return self.net(inputs, labels)


@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_the_steps_hand_the_batch_labels_to_every_call_of_both_networks(loss):
    torch.manual_seed(0)
    cfg = CGANSettings(loss=loss, n_critic=1)
    G, D = (Recording(m) for m in cfg.networks())
    training = cfg.training(G, D)
    x, y = torch.rand(8, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    training.train_step(x, y)
    training.eval_step(x, y)
    # BCE: D on real, fake, then fake for G; WGAN-GP adds the penalty's interpolates and G's fresh fakes
    assert len(D.calls) == (5 if loss == "bce" else 6) and len(G.calls) == (2 if loss == "bce" else 3)
    for labels in D.calls + G.calls:
        assert torch.equal(labels, y)


def test_the_gradient_penalty_scores_each_interpolate_with_its_own_label():
    """A critic D(x, y) = s_y * <w, x>: the gradient for an image of class y is s_y * w, its norm
    |s_y| * ||w||, so the penalty is the mean of (|s_y| * ||w|| - 1)^2 over the batch's labels."""
    torch.manual_seed(0)
    w = torch.randn(1, 28, 28)
    w = w / w.norm()  # ||w|| = 1
    s = torch.tensor([0.0, 1.0, 2.0, 3.0])

    def critic(images, labels):
        return s[labels] * (images * w).flatten(1).sum(1)

    real, fake = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3])
    expected = ((s[labels] - 1) ** 2).mean()  # (1 + 0 + 1 + 4) / 4 = 1.5
    assert float(expected) == pytest.approx(1.5)
    got = gradient_penalty(lambda images: critic(images, labels), real, fake)
    assert float(got) == pytest.approx(1.5, rel=1e-5)
    shuffled = gradient_penalty(lambda images: critic(images, labels.flip(0)), real, fake)
    assert float(shuffled) == pytest.approx(1.5, rel=1e-5)  # the same set of labels: the same mean ...
    one_label = gradient_penalty(lambda images: critic(images, torch.full((4,), 3)), real, fake)
    assert float(one_label) == pytest.approx(4.0, rel=1e-5)  # ... but every image as a 3: (3 - 1)^2


def test_the_wgan_gp_training_with_labels_lowers_the_critic_loss_on_real_digits(mnist_offline):
    environment.seed_everything(0)
    cfg = CGANSettings(loss="wgan-gp", n_critic=5)
    training = cfg.training(*cfg.networks())
    assert isinstance(training, WGANGPTraining)
    x, y = mnist_offline.train_x[:512], mnist_offline.train_y[:512]
    history = fit(training, x, None, epochs=2, batch_size=64, progress=False, train_y=y)
    assert history.last["train_wasserstein"] > 0  # the critic tells real from fake


class Copier(nn.Module):
    """A "generator" that returns a real test image of the requested digit (or of digit 0 when
    ``ignore_label``), in [-1, 1]: the conditional accuracy of the best and of a label-blind generator."""

    def __init__(self, data, ignore_label=False):
        super().__init__()
        self.latent_dim, self.num_classes, self.ignore_label = 100, 10, ignore_label
        self.by_digit = [data.test_x[data.test_y == d].cpu() for d in range(10)]
        self.anchor = nn.Parameter(torch.zeros(()))  # sample() asks for a parameter's device

    def forward(self, z, labels):
        picks = [self.by_digit[0 if self.ignore_label else int(d)][i % 50] for i, d in enumerate(labels)]
        return torch.stack(picks) * 2 - 1


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("classifier")


def test_conditional_accuracy_of_a_perfect_and_of_a_label_blind_generator(mnist_offline, classifier_cache, monkeypatch):
    monkeypatch.setenv("LABKIT_RUNS", str(classifier_cache))
    classifier, accuracy = metrics.digit_classifier(mnist_offline, epochs=2, cache_dir=classifier_cache)
    monkeypatch.setattr(metrics, "digit_classifier", lambda data, seed=0: (classifier, accuracy))
    for ignore, (low, high) in ((False, (0.9, 1.0)), (True, (0.09, 0.11))):
        G = Copier(mnist_offline, ignore_label=ignore)
        fake = gan.sample(G, 500, seed=0)  # the digits 0-9 in turn
        quality = metrics.drawn_class_accuracy((fake + 1) / 2, G.num_classes, mnist_offline)
        assert low <= quality["conditional_accuracy"] <= high, (ignore, quality)
        per_digit = quality["conditional_accuracy_per_digit"]
        assert len(per_digit) == 10
    assert per_digit[0] > 0.9 and max(per_digit[1:]) < 0.1  # label-blind: only the 0s are right


class Drawing:
    """A "training" whose ``draw`` is a ``Copier``'s images in [0, 1]: what the per-epoch callback asks for."""

    def __init__(self, generator):
        self.generator = generator

    def draw(self, n, seed=0):
        return (gan.sample(self.generator, n, seed=seed) + 1) / 2


def test_the_conditional_accuracy_per_epoch_is_written_into_each_epochs_record(
    mnist_offline, classifier_cache, monkeypatch
):
    monkeypatch.setenv("LABKIT_RUNS", str(classifier_cache))
    classifier, accuracy = metrics.digit_classifier(mnist_offline, epochs=2, cache_dir=classifier_cache)
    monkeypatch.setattr(metrics, "digit_classifier", lambda data, seed=0: (classifier, accuracy))
    records = []
    for ignore in (False, True):
        callback = metrics.ConditionalAccuracyPerEpoch(Drawing(Copier(mnist_offline, ignore)), mnist_offline, n=200)
        records.append({"epoch": 1})
        callback(1, records[-1], [records[-1]])
    obeys, blind = (r["conditional_accuracy"] for r in records)
    assert obeys > 0.9 and 0.09 <= blind <= 0.11  # real digits of the class asked for, and always a 0
    with pytest.raises(ValueError, match="not labelled 28x28 digits"):
        metrics.ConditionalAccuracyPerEpoch(Drawing(Copier(mnist_offline)), replace(mnist_offline, test_y=None))


@pytest.mark.parametrize(
    "options, name", [({}, "cgan"), ({"loss": "wgan-gp", "spectral_norm": True}, "cgan-wgan-gp-sn")]
)
def test_the_recipe_writes_conditional_accuracy_and_one_row_per_digit(tmp_path, options, name):
    cfg = CGANSettings(epochs=1, **options)
    assert cfg.run_name == name
    trained = run_cgan(cfg, out=tmp_path / name, progress=False)
    written = json.loads((tmp_path / name / "metrics.json").read_text())
    assert written["model"] == "cgan"
    final = written["final"]
    assert 0 <= final["conditional_accuracy"] <= 1 and len(final["conditional_accuracy_per_digit"]) == 10
    assert 0 <= final["class_coverage"] <= 10 and final["fid_classifier"] > 0
    assert "digit_grid" in written["figures"] and (tmp_path / name / written["figures"]["digit_grid"]).is_file()
    per_epoch = [r["conditional_accuracy"] for r in written["history"]]
    assert per_epoch == [r["conditional_accuracy"] for r in trained.history]
    assert len(trained.history) == 1 and 0 <= trained.history[0]["conditional_accuracy"] <= 1  # one per epoch
    assert trained.final == final
