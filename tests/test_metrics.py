"""Known answers for the comparison metrics of notebook 04."""

import math

import pytest
import torch

from labkit import metrics
from labkit.ae import Autoencoder
from labkit.engine import environment
from labkit.engine.loop import fit
from labkit.vae import VAETraining, make_vae
from labkit.vae.evaluation import elbo_decomposition, importance_weighted_bound


@pytest.fixture(scope="module")
def classifier(mnist_offline, tmp_path_factory):
    model, accuracy = metrics.digit_classifier(mnist_offline, epochs=2, cache_dir=tmp_path_factory.mktemp("cache"))
    return model, accuracy


@pytest.fixture(scope="module")
def trained_vae(mnist_offline):
    environment.seed_everything(0)
    vae = make_vae("default")
    fit(VAETraining(vae), mnist_offline.train_x, epochs=1, batch_size=64, progress=False)
    return vae.eval()


def test_classifier_learns_digits_and_is_cached(classifier, mnist_offline, tmp_path, monkeypatch):
    model, accuracy = classifier
    assert accuracy > 0.9  # two epochs on 4,000 real digits
    cache = tmp_path / "cache"
    first, acc_first = metrics.digit_classifier(mnist_offline, epochs=1, cache_dir=cache)
    import labkit.engine.loop

    monkeypatch.setattr(labkit.engine.loop, "fit", lambda *a, **k: pytest.fail("retrained although cached"))
    second, acc_second = metrics.digit_classifier(mnist_offline, epochs=1, cache_dir=cache)
    assert acc_second == acc_first
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_changed_data_gets_its_own_classifier(mnist_offline):
    smaller = mnist_offline.to("cpu")
    smaller.train_x = smaller.train_x[:100]
    smaller.train_y = smaller.train_y[:100]
    assert metrics._fingerprint(smaller, 2, 0) != metrics._fingerprint(mnist_offline, 2, 0)


def test_frechet_distance_of_a_set_against_itself_is_zero(classifier, mnist_offline):
    assert metrics.frechet_distance(classifier[0], mnist_offline.test_x, mnist_offline.test_x) == pytest.approx(
        0, abs=1e-3
    )


def test_frechet_distance_real_digits_against_noise_is_large(classifier, mnist_offline):
    real_vs_real = metrics.frechet_distance(classifier[0], mnist_offline.test_x, mnist_offline.train_x[:1000])
    torch.manual_seed(0)
    real_vs_noise = metrics.frechet_distance(classifier[0], mnist_offline.test_x, torch.rand(1000, 1, 28, 28))
    assert real_vs_noise > 20 * real_vs_real


def test_single_digit_samples_cover_one_class_with_kl_log_10(classifier, mnist_offline):
    model = classifier[0]
    sevens = mnist_offline.test_x[mnist_offline.test_y == 7]
    with torch.no_grad():
        sevens = sevens[model(sevens).argmax(1) == 7]  # the ones the classifier reads as 7
    coverage = metrics.class_coverage(model, sevens)
    assert coverage["classes_covered"] == 1
    assert coverage["kl_from_uniform"] == pytest.approx(math.log(10))
    assert coverage["histogram"][7] == len(sevens)


def test_real_test_set_covers_all_digits_nearly_uniformly(classifier, mnist_offline):
    coverage = metrics.class_coverage(classifier[0], mnist_offline.test_x)
    assert coverage["classes_covered"] == 10
    assert coverage["kl_from_uniform"] < 0.02


def test_sample_quality_metrics_refuse_wrong_shapes(classifier):
    with pytest.raises(ValueError, match=r"MNIST-shaped images \(N, 1, 28, 28\)"):
        metrics.class_coverage(classifier[0], torch.rand(10, 3, 32, 32))


def test_elbo_parts_add_up_and_match_the_training_loss(trained_vae, mnist_offline):
    parts = elbo_decomposition(trained_vae, mnist_offline.test_x, samples=4)
    assert parts["neg_elbo"] == pytest.approx(parts["recon"] + parts["kl"], rel=1e-9)
    assert 0 < parts["kl"] < parts["recon"]


def test_importance_weighted_bound_is_tighter_than_the_elbo(trained_vae, mnist_offline):
    x = mnist_offline.test_x[:300]
    elbo = elbo_decomposition(trained_vae, x, samples=32)["neg_elbo"]
    k1 = importance_weighted_bound(trained_vae, x, k=1)
    k64 = importance_weighted_bound(trained_vae, x, k=64)
    assert k1 == pytest.approx(elbo, rel=0.01)  # k = 1 is the ELBO
    assert k64 < elbo - 0.5


def test_reconstruction_errors_known_answers():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, :14] = 1.0
    perfect = metrics.reconstruction_errors(lambda t: t, x)
    assert perfect["mse_per_pixel"] == pytest.approx(0, abs=1e-10)
    half = metrics.reconstruction_errors(lambda t: torch.full_like(t, 0.5), x)
    assert half["mse_per_pixel"] == pytest.approx(0.25)
    assert half["bce_nats"] == pytest.approx(784 * math.log(2), rel=1e-5)
    assert Autoencoder()(x).shape == x.shape


def test_inception_fid_offline_says_why_it_was_not_computed(monkeypatch):
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    result = metrics.inception_fid(torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64))
    assert result == {
        "inception_fid_not_computed": "offline (LABKIT_OFFLINE=1): the Inception weights cannot be downloaded"
    }


def test_inception_fid_reports_a_failed_download_and_passes_images_through_when_it_works(monkeypatch):
    import torchmetrics.image.fid as tm_fid

    monkeypatch.setenv("LABKIT_OFFLINE", "0")

    class Unreachable:
        def __init__(self, **kwargs):
            raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(tm_fid, "FrechetInceptionDistance", Unreachable)
    result = metrics.inception_fid(torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64))
    assert result["inception_fid_not_computed"].startswith("the Inception weights could not be loaded (<urlopen")

    class MeanGap:  # a stand-in with FID's interface: real/fake batches in, one number out
        def __init__(self, feature, normalize, sync_on_compute):
            # sync_on_compute=False: under torchrun rank 0 measures alone (no gather over finished ranks)
            assert (feature, normalize, sync_on_compute) == (2048, True, False)
            self.sums = {True: 0.0, False: 0.0}

        def to(self, device):
            return self

        def update(self, images, real):
            assert images.shape[1] == 3
            self.sums[real] += float(images.sum())

        def compute(self):
            return torch.tensor(self.sums[True] - self.sums[False])

    monkeypatch.setattr(tm_fid, "FrechetInceptionDistance", MeanGap)
    real, fake = torch.ones(150, 3, 8, 8), torch.zeros(150, 3, 8, 8)
    assert metrics.inception_fid(real, fake) == {"inception_fid": 150 * 3 * 8 * 8}
