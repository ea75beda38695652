"""The VQ-VAE: the quantiser picks the nearest code, its gradients go where the paper says, dead codes
show, and the model trains, in mixed precision too, and records its run."""

import json
import math

import pytest
import torch

from labkit.engine import environment
from labkit.engine.loop import evaluate, fit
from labkit.losses import bernoulli_nll
from labkit.vae.vqvae import (
    VQVAE,
    VectorQuantizer,
    VQVAESettings,
    VQVAETraining,
    codebook_stats,
    codebook_usage,
    codebook_usage_report,
    run_vqvae,
    vqvae_loss,
)

FINAL_KEYS = {"test_mse", "test_recon_nats", "codebook_perplexity", "codebook_usage", "seconds_per_epoch", "parameters"}


def _quantizer(codes) -> VectorQuantizer:
    codes = torch.tensor(codes, dtype=torch.float32)
    vq = VectorQuantizer(n_codes=len(codes), code_dim=codes.shape[1])
    with torch.no_grad():
        vq.codebook.weight.copy_(codes)
    return vq


CODES = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]


def test_the_quantizer_picks_the_nearest_code():
    vq = _quantizer(CODES)
    z_e = torch.tensor([[0.1, 0.2], [0.9, -0.1], [0.2, 0.7], [4.0, 6.0], [0.6, 0.45], [-3.0, -3.0]])
    with torch.no_grad():
        q = vq(z_e)
    assert q.indices.tolist() == [0, 1, 2, 3, 1, 0]
    assert torch.equal(q.z_q, torch.tensor(CODES)[[0, 1, 2, 3, 1, 0]])
    # the mean over the six vectors of the squared distance to the chosen code, worked out by hand
    expected = (0.05 + 0.02 + 0.13 + 2.0 + 0.3625 + 18.0) / 6
    assert float(q.codebook_loss) == pytest.approx(expected)
    assert float(q.commitment_loss) == float(q.codebook_loss)  # the same distances, differently detached


def test_the_quantizer_takes_a_grid_of_vectors_channels_first():
    vq = _quantizer(CODES)
    grid = torch.tensor([[[0.9, 0.1], [4.0, 0.1]], [[0.0, 0.2], [6.0, 0.8]]])  # (code_dim 2, H 2, W 2)
    q = vq(grid.unsqueeze(0))  # the vectors grid[:, h, w]: (0.9, 0.0), (0.1, 0.2) / (4.0, 6.0), (0.1, 0.8)
    assert q.indices.tolist() == [[[1, 0], [3, 2]]]
    assert q.z_q.shape == (1, 2, 2, 2) and torch.equal(q.z_q[0, :, 1, 0], torch.tensor(CODES[3]))
    with pytest.raises(ValueError, match=r"expects \(batch, 2\) or \(batch, 2, H, W\)"):
        vq(torch.zeros(3, 5))


def test_under_autocast_the_nearest_code_is_found_in_float32():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_codes=64, code_dim=4)
    z_e = torch.randn(4000, 4) * 0.05
    exact = torch.cdist(z_e.double(), vq.codebook.weight.double()).argmin(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = vq(z_e).indices
    assert torch.equal(mixed, exact)


def test_the_straight_through_gradient_reaches_the_encoder_unchanged():
    torch.manual_seed(0)
    model = VQVAE(n_codes=16)
    x = torch.rand(8, 1, 28, 28).round()
    z_e = model.encode(x)
    z_e.retain_grad()
    q = model.quantizer(z_e)
    q.z_q.retain_grad()
    bernoulli_nll(model.decode_logits(q.z_q), x).mean().backward()  # the reconstruction alone
    assert z_e.grad is not None and z_e.grad.abs().sum() > 0
    assert torch.equal(z_e.grad, q.z_q.grad)  # d loss / d z_e = d loss / d z_q
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.quantizer.codebook.weight.grad is None  # the codes learn from the codebook loss only


def test_the_codebook_loss_moves_the_codes_and_the_commitment_loss_moves_the_encoder():
    torch.manual_seed(0)
    model = VQVAE(n_codes=16)
    x = torch.rand(8, 1, 28, 28)
    encoder, codebook = list(model.encoder.parameters()), model.quantizer.codebook.weight

    model.zero_grad()
    model.quantizer(model.encode(x)).codebook_loss.backward()
    assert codebook.grad is not None and codebook.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder)

    model.zero_grad(set_to_none=True)
    model.quantizer(model.encode(x)).commitment_loss.backward()
    assert codebook.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder)


def test_vqvae_loss_is_paper_eq_3_with_beta_on_the_commitment():
    logits, x = torch.zeros(2, 1, 28, 28), torch.ones(2, 1, 28, 28)
    parts = vqvae_loss(logits, x, torch.tensor(3.0), torch.tensor(8.0), beta=0.25)
    assert float(parts["recon"]) == pytest.approx(784 * math.log(2), rel=1e-6)  # p = 1/2 for every pixel
    assert float(parts["loss"]) == pytest.approx(784 * math.log(2) + 3.0 + 0.25 * 8.0, rel=1e-6)
    assert set(parts) == {"loss", "recon", "codebook", "commitment"}


def test_codebook_stats_of_a_hand_made_histogram():
    # codes 0, 1, 2, 3 used 4, 2, 1, 1 times, codes 4 to 7 never: p = 1/2, 1/4, 1/8, 1/8
    stats = codebook_stats(torch.tensor([0, 0, 0, 0, 1, 1, 2, 3]), n_codes=8)
    assert stats["codebook_perplexity"] == pytest.approx(2**1.75)  # entropy 1.75 bits
    assert stats["codebook_usage"] == 0.5
    assert codebook_stats(torch.arange(10), 10) == pytest.approx({"codebook_perplexity": 10, "codebook_usage": 1})


def test_a_code_far_from_every_input_is_dead_and_reported():
    vq = _quantizer([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    z_e = torch.tensor([[0.1, 0.0]] * 2 + [[1.0, 0.1]] + [[0.0, 0.9]])  # codes 0, 0, 1, 2; code 3 never
    stats = codebook_stats(vq(z_e).indices, n_codes=4)
    assert stats["codebook_usage"] == 0.75
    assert stats["codebook_perplexity"] == pytest.approx(2 ** (1.5))  # p = 1/2, 1/4, 1/4: entropy 1.5 bits
    assert codebook_usage_report(stats, 4) == "3 of 4 codes used, perplexity 2.8"
    with pytest.warns(UserWarning, match="1 of 4 codes used.*Try a smaller code_dim.*restart dead codes"):
        codebook_usage_report(codebook_stats(torch.zeros(5), 4), 4)


def test_a_few_epochs_lower_the_test_loss_and_use_more_than_one_code(mnist_offline):
    environment.seed_everything(0)
    training = VQVAESettings().training("cpu")
    x, test_x = mnist_offline.train_x[:1000], mnist_offline.test_x[:300]
    before = evaluate(training, test_x)
    history = fit(training, x, test_x, epochs=5, batch_size=32, progress=False)
    after = history.last
    assert before["recon"] > 500  # ~784 log 2 nats for a decoder that says 1/2 everywhere
    # early on the encoder's outputs outrun the codes (codebook and commitment grow, then shrink), so the
    # total falls less than its reconstruction part does
    assert after["test_loss"] < 0.7 * before["loss"] and after["test_recon"] < 0.25 * before["recon"]
    assert after["test_mse"] < 0.15 * before["mse"]
    assert set(after) >= {"train_loss", "train_recon", "train_codebook", "train_commitment", "test_mse"}
    stats = codebook_usage(training.model, test_x)
    assert stats["codebook_perplexity"] > 2 and stats["codebook_usage"] > 1 / 64
    assert training.model.encode_indices(test_x[:5]).shape == (5, 7, 7)
    assert training.model.sample_random_codes(3).shape == (3, 1, 28, 28)


@pytest.mark.gpu_emulation
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_an_epoch_in_mixed_precision_under_cudas_rules_gives_finite_losses(
    precision, cuda_autocast_rules, mnist_offline
):
    torch.manual_seed(0)
    training = VQVAESettings(epochs=1).training("cpu")
    x, test_x = mnist_offline.train_x[:192], mnist_offline.test_x[:100]
    history = fit(training, x, test_x, epochs=1, batch_size=64, progress=False, precision=precision)
    assert training.precision.mode == precision
    assert all(math.isfinite(v) for v in history.last.values()), history.last
    assert all(math.isfinite(v) for v in evaluate(training, test_x).values())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="n_codes must be"):
        VQVAESettings(n_codes=0)
    with pytest.raises(ValueError, match="beta must be"):
        VQVAESettings(beta=-1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        VQVAETraining(VQVAE(), lr=0)
    with pytest.raises(ValueError, match="expects images of shape"):
        VQVAE()(torch.zeros(2, 784))


@pytest.mark.filterwarnings("ignore:.*codes used")  # two smoke epochs leave most codes dead
def test_run_vqvae_in_smoke_mode_writes_figures_and_final_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    trained = run_vqvae(VQVAESettings(), out=tmp_path / "run", device="cpu", progress=False)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["model"] == "vqvae" and record["smoke"] and record["epochs"] == 2 == len(record["history"])
    assert record["hyperparameters"]["code_dim"] == 4 and record["hyperparameters"]["precision"] == "fp32"
    final = record["final"]
    assert set(final) == FINAL_KEYS and final == trained.final
    assert 0 < final["codebook_usage"] <= 1 and 1 <= final["codebook_perplexity"] <= 64
    assert 0 < final["test_mse"] < 0.1 and final["test_recon_nats"] > 0
    assert final["parameters"] == sum(p.numel() for p in trained.training.model.parameters())
    for name in ("loss_curves", "reconstructions", "random_codes", "codebook_usage"):
        assert (tmp_path / "run" / f"{name}.png").is_file() and record["figures"][name] == f"{name}.png"
