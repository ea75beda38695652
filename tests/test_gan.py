"""The GAN lab: network shapes, DCGAN init, the adversarial losses with known answers, k generator
steps, the fixed-noise progression and its GIF, the mode-collapse signal, and short real runs."""

import json
import math
from dataclasses import replace

import pytest
import torch
from PIL import Image
from torch import nn

from labkit import gan, metrics, models, progression
from labkit.engine import environment
from labkit.engine.loop import fit
from labkit.engine.training import History
from labkit.gan import nets as gan_nets
from labkit.gan.recipe import DCGANSettings, GANSettings, run_dcgan, run_gan

# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3)])
@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("upsample", ["resize", "transposed"])
def test_dcgan_output_shapes_at_28_32_and_64_pixels(size, channels, downsample, upsample):
    G, D = gan_nets.dcgan(size, channels, downsample=downsample, upsample=upsample)
    images = G(torch.randn(4, 100))
    assert images.shape == (4, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh
    assert D(images).shape == (4,)


def test_dcgan_64_has_the_parameter_count_of_pytorch_examples_with_transposed_convolutions():
    # pytorch/examples dcgan/main.py with nz=100, ngf=ndf=64, nc=3: 3,576,704 and 2,765,633 parameters
    G, D = gan_nets.dcgan(64, 3, upsample="transposed")
    assert sum(p.numel() for p in G.parameters()) == 3_576_704
    assert sum(p.numel() for p in D.parameters()) == 2_765_633
    # resize-then-convolve: the same first block (100*512*16 + 2*512), then 3x3 kernels where those were 4x4:
    # 512*256*9 + 2*256, 256*128*9 + 2*128, 128*64*9 + 2*64, 64*3*9
    G = gan_nets.DCGANGenerator(upsample="resize")
    assert sum(p.numel() for p in G.parameters()) == 820_224 + 1_180_160 + 295_168 + 73_856 + 1_728


@pytest.mark.parametrize("upsample", ["resize", "transposed"])
def test_only_the_transposed_convolution_paints_a_checkerboard_on_a_flat_input(upsample):
    """Odena et al. 2016: a flat feature map doubled by a stride-2 transposed convolution comes out with a pattern
    of period 2 (each pixel of a 2x2 block sums other kernel taps); upsampling then convolving keeps it flat away
    from the border."""
    torch.manual_seed(0)
    double = nn.Sequential(*gan_nets._doubling(1, 1, upsample))
    with torch.no_grad():
        out = double(torch.ones(1, 1, 8, 8))[0, 0, 2:-2, 2:-2]  # (12, 12), away from the zero padding
    parity_means = torch.stack([out[i::2, j::2].mean() for i in (0, 1) for j in (0, 1)])
    assert out.shape == (12, 12) and out.abs().min() > 0
    if upsample == "resize":
        torch.testing.assert_close(out, torch.full_like(out, out[0, 0].item()))
    else:
        assert (out[0::2, 0::2] == out[0, 0]).all()  # flat within each parity class ...
        assert parity_means.max() - parity_means.min() > 0.1 * parity_means.abs().max()  # ... and not between them


def test_the_command_line_chooses_the_dcgan_generators_upsampling():
    from labkit.__main__ import _parser

    assert _parser().parse_args(["train", "dcgan"]).upsample is None  # None: the settings' default, resize
    assert _parser().parse_args(["train", "dcgan", "--upsample", "transposed"]).upsample == "transposed"
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "dcgan", "--upsample", "bilinear"])


def test_mlp_gan_has_the_write_up_003_layers_and_shapes():
    G, D = gan_nets.mlp_gan()
    assert [m.out_features for m in G.modules() if isinstance(m, nn.Linear)] == [128, 256, 512, 1024, 784]
    assert [m.out_features for m in D.modules() if isinstance(m, nn.Linear)] == [512, 256, 1]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.modules()) == 3
    images = G(torch.randn(5, 100))
    assert images.shape == (5, 1, 28, 28) and D(images).shape == (5,)


def test_maxpool_discriminator_downsamples_with_pooling_not_strides():
    D = gan_nets.DCGANDiscriminator(32, downsample="maxpool")
    assert sum(isinstance(m, nn.MaxPool2d) for m in D.modules()) == 3
    assert all(m.stride == (1, 1) for m in D.modules() if isinstance(m, nn.Conv2d))


def test_discriminator_says_which_size_it_was_built_for():
    with pytest.raises(ValueError, match="image_size=32"):
        gan_nets.DCGANDiscriminator(64)(torch.zeros(2, 3, 32, 32))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: gan_nets.DCGANGenerator(latent_dim=0), "latent_dim"),
        (lambda: gan_nets.DCGANGenerator(image_size=48), "48 is not supported"),
        (lambda: gan_nets.DCGANDiscriminator(downsample="avgpool"), "downsample"),
        (lambda: gan_nets.DCGANGenerator(upsample="bilinear"), "upsample must be one of resize, transposed"),
        (lambda: gan.GANTraining(*gan_nets.mlp_gan(), lr_g=0), "lr_g"),
        (lambda: gan.GANTraining(*gan_nets.mlp_gan(), lr_d=-1e-4), "lr_d"),
        (lambda: gan.GANTraining(*gan_nets.mlp_gan(), g_steps=0), "g_steps"),
        (lambda: gan.GANTraining(*gan_nets.mlp_gan(), real_label=0.0), "real_label"),
        (lambda: gan.GANTraining(*gan_nets.mlp_gan(), real_label=1.1), "real_label"),
        (lambda: GANSettings(lr=0), "lr"),
        (lambda: DCGANSettings(dataset="cifar10", image_size=48), "built for 28, 32, 64 pixels"),
        (lambda: DCGANSettings(dataset="imagenet"), "unknown dataset"),
    ],
)
def test_bad_hyperparameters_are_refused_with_a_clear_message(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_dcgan_settings_follow_the_dataset_when_it_is_changed_later():
    cfg = replace(DCGANSettings(), dataset="cifar10")  # what the command line does with --dataset
    assert cfg.size == 32 and cfg.run_name == "dcgan-cifar10"
    assert DCGANSettings().size == 64 and DCGANSettings(image_size=32).size == 32
    assert DCGANSettings(image_size=32).run_name == "dcgan-32px"  # never the 64-pixel run's folder
    assert DCGANSettings().upsample == "resize" and DCGANSettings(upsample="transposed").run_name == "dcgan-transposed"
    assert replace(cfg, dataset="mnist").run_name == "dcgan-mnist"
    assert DCGANSettings(dataset="fashion-mnist", loss="wgan-gp").run_name == "dcgan-fashion-mnist-wgan-gp"
    assert DCGANSettings(dataset="fashion-mnist").image_shape == (1, 28, 28)
    assert GANSettings(lr=1e-3, lr_d=4e-4).lrs == (1e-3, 4e-4)


@torch.no_grad()
def test_dcgan_init_is_normal_0_002_for_convolutions_and_1_002_for_batch_norm():
    torch.manual_seed(0)
    for net in gan_nets.dcgan(64, 3):
        convs = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
        scales = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        biases = [
            m.bias
            for m in net.modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d))
            if m.bias is not None
        ]
        assert abs(convs.mean()) < 5e-4 and convs.std() == pytest.approx(0.02, abs=5e-4)
        assert scales.mean() == pytest.approx(1.0, abs=3e-3) and scales.std() == pytest.approx(0.02, abs=3e-3)
        assert all((b == 0).all() for b in biases)
    # PyTorch's own default init (std ~0.006 here) is far from it: the test tells the two apart
    assert abs(nn.ConvTranspose2d(100, 512, 4).weight.std() - 0.02) > 0.01


# --------------------------------------------------------------------------- losses and the training


def test_discriminator_loss_with_label_smoothing_equals_the_hand_computed_value():
    ln3 = math.log(3)
    real_logits = torch.tensor([0.0, ln3])  # D(x) = 0.5, 0.75
    fake_logits = torch.tensor([ln3, -ln3])  # D(G(z)) = 0.75, 0.25
    # real targets 0.9: -(0.9 ln p + 0.1 ln(1 - p)); fake targets 0: -ln(1 - p)
    real = (math.log(2) + -(0.9 * math.log(0.75) + 0.1 * math.log(0.25))) / 2
    fake = (-math.log(0.25) + -math.log(0.75)) / 2
    loss = gan.discriminator_loss(real_logits, fake_logits, real_label=0.9)
    assert float(loss) == pytest.approx(real + fake, abs=1e-6)
    assert float(loss) == pytest.approx(1.382333, abs=1e-6)
    # without smoothing the real term is -ln p
    plain = (-math.log(0.5) - math.log(0.75)) / 2 + fake
    assert float(gan.discriminator_loss(real_logits, fake_logits)) == pytest.approx(plain, abs=1e-6)
    assert float(gan.generator_loss(fake_logits)) == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2, abs=1e-6)


class ConstantDiscriminator(nn.Module):
    """Says the same logit for every image (0 * x keeps a gradient path to G)."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(float(logit)))

    def forward(self, x):
        return self.logit + 0 * x.flatten(1).sum(1)


@pytest.mark.parametrize("real_label", [1.0, 0.9])
def test_train_step_reports_the_hand_computed_discriminator_loss_on_a_fixed_batch(real_label):
    G = gan_nets.MLPGenerator()
    training = gan.GANTraining(G, ConstantDiscriminator(math.log(3)), real_label=real_label)  # D = 0.75
    out = training.train_step(torch.rand(16, 1, 28, 28))
    real = -(real_label * math.log(0.75) + (1 - real_label) * math.log(0.25))
    assert float(out["d_loss"]) == pytest.approx(real + math.log(4), abs=1e-5)  # 1.67398 / 1.78384
    assert float(out["d_real"]) == pytest.approx(0.75, abs=1e-6)
    assert float(out["d_fake"]) == pytest.approx(0.75, abs=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_k_generator_updates_really_run_k_times_per_discriminator_update(k):
    G, D = gan_nets.mlp_gan()
    training = gan.GANTraining(G, D, g_steps=k)
    forwards = []
    G.register_forward_hook(lambda *_: forwards.append("G"))
    D.register_forward_hook(lambda *_: forwards.append("D"))
    x = torch.rand(8, 1, 28, 28)
    training.train_step(x)
    training.train_step(x)
    g_step = {int(training.opt_g.state[p]["step"]) for p in G.parameters()}
    d_step = {int(training.opt_d.state[p]["step"]) for p in D.parameters()}
    assert g_step == {2 * k} and d_step == {2}
    # per train step: G makes the batch D sees (reused by the first G update), D judges real and fake,
    # then each of the k G updates judges a fake (the later ones on fresh noise)
    assert forwards.count("G") == 2 * k and forwards.count("D") == 2 * (2 + k)


def test_fit_records_epoch_means_of_the_four_quantities_and_drops_the_ragged_batch():
    G, D = gan_nets.mlp_gan()
    training = gan.GANTraining(G, D)
    seen = []
    step = training.train_step
    training.train_step = lambda x: seen.append(step(x)) or seen[-1]
    history = fit(training, torch.rand(70, 1, 28, 28), epochs=1, batch_size=32, progress=False)
    assert len(seen) == 2  # 70 images, batches of 32: the last 6 are dropped
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert history.last[f"train_{key}"] == pytest.approx(sum(float(s[key]) for s in seen) / 2, rel=1e-6)


def test_sampling_leaves_the_generator_unchanged():
    G = gan_nets.DCGANGenerator(image_size=32)
    state = {k: v.clone() for k, v in G.state_dict().items()}
    G.train()
    z = torch.randn(16, 100)
    first, second = models.generate(G, z), models.generate(G, z)
    assert torch.equal(first, second)
    assert all(torch.equal(v, state[k]) for k, v in G.state_dict().items())  # running stats untouched
    assert G.training and all(m.track_running_stats for m in G.modules() if isinstance(m, nn.BatchNorm2d))


# --------------------------------------------------------------------------- progression and GIF


def test_fixed_noise_frames_and_gif_have_one_frame_per_epoch(mnist_offline, tmp_path):
    environment.seed_everything(0)
    G, D = gan_nets.dcgan(28, 1, width=16)
    recorder = progression.FixedNoise(G, n=16, seed=1)
    z = recorder.z.clone()
    history = fit(
        gan.GANTraining(G, D),
        mnist_offline.train_x[:256],
        epochs=3,
        batch_size=64,
        callbacks=[recorder],
        progress=False,
    )
    assert recorder.epochs == [1, 2, 3] and len(history) == 3
    assert torch.equal(recorder.z, z)  # drawn once
    assert not torch.equal(recorder.frames[0], recorder.frames[-1])  # G learned between epochs
    with Image.open(recorder.save_gif(tmp_path / "p.gif")) as gif:
        assert gif.n_frames == 3 and gif.info["loop"] == 0
    fig = recorder.figure()
    assert len(fig.axes) == 3


def test_gif_keeps_one_frame_per_epoch_even_when_g_does_not_change(tmp_path):
    G = gan_nets.DCGANGenerator(image_size=28, channels=1, width=8)
    recorder = progression.FixedNoise(G, n=4)
    for epoch in range(1, 6):
        recorder(epoch, {}, [])
    assert all(torch.equal(f, recorder.frames[0]) for f in recorder.frames)
    with Image.open(progression.progression_gif(recorder.frames, recorder.epochs, tmp_path / "same.gif")) as gif:
        assert gif.n_frames == 5  # Pillow would merge identical frames; the epoch label prevents it


def test_progression_figure_shows_at_most_max_rows_with_first_and_last_epoch():
    assert progression._pick_rows(25, 10)[0] == 0 and progression._pick_rows(25, 10)[-1] == 24
    assert len(progression._pick_rows(25, 10)) == 10 and progression._pick_rows(4, 10) == [0, 1, 2, 3]
    frames = [torch.zeros(8, 3, 32, 32)] * 25
    assert len(progression.fixed_noise_progression(frames, list(range(1, 26))).axes) == 10


# --------------------------------------------------------------------------- mode collapse


def test_diversity_known_answers():
    zeros, ones = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    assert metrics.diversity(torch.cat([zeros, ones])) == pytest.approx(2.0)  # sqrt(4 pixels * 1^2)
    assert metrics.diversity(torch.cat([zeros, ones, ones])) == pytest.approx(4 / 3)  # distances 2, 2, 0


def test_diversity_ratio_is_1_for_real_data_and_0_for_a_collapsed_generator(mnist_offline):
    real = mnist_offline.test_x[:300]
    assert metrics.diversity_ratio(real, real)["diversity_ratio"] == pytest.approx(1.0)
    collapsed = real[:1].repeat(300, 1, 1, 1)
    assert metrics.diversity_ratio(collapsed, real)["diversity_ratio"] == 0.0
    ones_only = mnist_offline.test_x[mnist_offline.test_y == 1][:100]  # one digit class: a partial collapse
    assert metrics.diversity_ratio(ones_only, real)["diversity_ratio"] < 0.75


# --------------------------------------------------------------------------- short real runs


def test_two_epochs_of_the_mnist_gan_move_samples_towards_the_data(mnist_offline):
    environment.seed_everything(0)
    G, D = gan_nets.mlp_gan()
    training = gan.GANTraining(G, D)
    real_mean = float(mnist_offline.train_x.mean())  # about 0.13: mostly black digits
    before = float((gan.sample(G, 500, seed=0) + 1).mean() / 2)  # an untrained tanh says about 0.5
    history = fit(training, mnist_offline.train_x[:1024], epochs=2, batch_size=32, progress=False)
    after = float((gan.sample(G, 500, seed=0) + 1).mean() / 2)
    assert abs(before - 0.5) < 0.1 and real_mean < 0.2
    assert abs(after - real_mean) < 0.5 * abs(before - real_mean)  # about 0.3 in practice
    assert history[0]["train_d_real"] > history[0]["train_d_fake"]  # D learns to tell them apart first


def test_run_dcgan_on_the_stand_in_writes_metrics_figures_and_gif(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    cfg = DCGANSettings(epochs=2, batch_size=16, n_images=32)
    final = run_dcgan(cfg, out=tmp_path / "run", device="cpu", progress=False).final
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "dcgan" and metrics["epochs"] == 2
    assert metrics["dataset"]["source"] == "synthetic-stand-in" and "synthetic stand-in" in metrics["dataset"]["label"]
    assert metrics["dataset"]["n_train"] == 32
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert {"train_d_loss", "train_g_loss", "train_d_real", "train_d_fake"} <= set(metrics["history"][0])
    assert final["seconds_per_epoch"] > 0 and 0 < final["diversity_ratio"] < 2
    assert metrics["hyperparameters"]["real_label"] == 0.9 and metrics["hyperparameters"]["image_size"] == 64
    for name in ("real_images", "gan_curves", "progression", "samples", "progression_gif"):
        assert (tmp_path / "run" / metrics["figures"][name]).is_file()
    with Image.open(tmp_path / "run" / "progression.gif") as gif:
        assert gif.n_frames == 2
    assert "offline" in metrics["final"]["inception_fid_not_computed"]  # the report says why there is no FID
    # the offline judge instead: 16 generated against 16 real images, and 16 other real ones against them
    assert 0 < final["sliced_wasserstein_real"] < final["sliced_wasserstein"]  # two epochs: far from the floor
    assert len(final["sliced_wasserstein_levels"]) == 3  # 64, 32 and 16 pixels


def test_run_gan_on_mnist_reports_the_mode_collapse_ratio(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    final = run_gan(GANSettings(epochs=1, batch_size=256), out=tmp_path / "run", device="cpu", progress=False).final
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "gan" and metrics["dataset"]["source"] == "offline-subset"
    assert metrics["final"]["diversity_ratio"] == final["diversity_ratio"]
    assert 0 < final["diversity_ratio"] < 2 and final["real_diversity"] > 5  # MNIST digits differ by ~10
    assert final["parameters_g"] == 1_510_032 and final["parameters_d"] == 533_505


def _records(d_loss, d_fake, n):
    return [{"epoch": e, "train_d_loss": d_loss, "train_d_fake": d_fake} for e in range(1, n + 1)]


def test_a_discriminator_that_wins_outright_for_three_epochs_gets_one_warning_with_what_to_try():
    import warnings as w

    training = gan.GANTraining(*gan_nets.mlp_gan(8), latent_dim=8)
    history = History()
    caught = []
    for record in _records(0.01, 0.002, 5):
        history.append(record)
        with w.catch_warnings(record=True) as got:
            w.simplefilter("always")
            training.epoch_end(record, history)
        caught.append([str(x.message) for x in got])
    assert [len(c) for c in caught] == [0, 0, 1, 0, 0]
    assert "won outright for 3 epochs (epoch 3" in caught[2][0]
    assert "real_label=0.9" in caught[2][0] and "lr_d=0.0001" in caught[2][0] and "g_steps=2" in caught[2][0]


def test_the_loss_floor_under_label_smoothing_is_the_binary_entropy_of_the_real_label():
    assert gan.smallest_discriminator_loss(1.0) == 0
    assert gan.smallest_discriminator_loss(0.9) == pytest.approx(0.3251, abs=1e-4)
    # a perfect discriminator reaches it: logits of exactly real_label on real images, -inf on fakes
    real, fake = torch.full((4, 1), math.log(0.9 / 0.1)), torch.full((4, 1), -50.0)
    assert float(gan.discriminator_loss(real, fake, 0.9)) == pytest.approx(
        gan.smallest_discriminator_loss(0.9), abs=1e-6
    )


def test_a_smoothed_discriminator_at_its_loss_floor_is_caught_and_not_told_to_smooth_again():
    import warnings as w

    # with real_label=0.9 the D loss cannot go below 0.325: 0.34 is D winning outright
    training = gan.GANTraining(*gan_nets.mlp_gan(8), latent_dim=8, real_label=0.9, g_steps=2)
    history = History(_records(0.34, 0.01, 3))
    with w.catch_warnings(record=True) as got:
        w.simplefilter("always")
        training.epoch_end(history.last, history)
    (message,) = [str(x.message) for x in got]
    assert "its floor 0.325" in message and "lr_d=0.0001" in message
    assert "real_label" not in message and "g_steps" not in message
    # 0.40 is 0.075 above the floor: D is ahead, not winning outright
    training = gan.GANTraining(*gan_nets.mlp_gan(8), latent_dim=8, real_label=0.9)
    history = History(_records(0.40, 0.01, 3))
    with w.catch_warnings():
        w.simplefilter("error")
        training.epoch_end(history.last, history)


@pytest.mark.parametrize("d_loss, d_fake", [(0.01, 0.3), (0.4, 0.01)])
def test_a_discriminator_ahead_but_not_winning_outright_gets_no_warning(d_loss, d_fake):
    import warnings as w

    training = gan.GANTraining(*gan_nets.mlp_gan(8), latent_dim=8)
    history = History(_records(d_loss, d_fake, 5))
    with w.catch_warnings():
        w.simplefilter("error")
        training.epoch_end(history.last, history)


def test_a_long_run_animates_at_most_max_frames_keeping_the_first_and_last_epoch(tmp_path):
    frames = [torch.full((4, 1, 28, 28), -1 + 2 * i / 59) for i in range(60)]
    path = progression.progression_gif(frames, list(range(1, 61)), tmp_path / "p.gif", max_frames=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 10
        first = gif.convert("L").getpixel((20, 40))
        gif.seek(9)
        last = gif.convert("L").getpixel((20, 40))
    assert first < 10 and last > 245  # epoch 1 (black images) and epoch 60 (white images)


def test_on_a_cpu_the_dcgan_trains_fewer_epochs_and_says_so_in_its_run_and_the_report(monkeypatch, tmp_path):
    from labkit import report
    from labkit.engine import environment
    from labkit.gan.recipe import DCGAN_CPU_EPOCHS, DCGAN_EPOCHS

    monkeypatch.setenv("LABKIT_SMOKE", "0")
    monkeypatch.setattr(environment, "training_on_cpu", lambda: True)
    cpu = DCGANSettings()
    assert cpu.epochs == DCGAN_CPU_EPOCHS < DCGAN_EPOCHS
    note = cpu.epochs_note
    assert note.startswith(f"CPU: {DCGAN_CPU_EPOCHS} of the course's {DCGAN_EPOCHS} DCGAN epochs")
    assert GANSettings().epochs == 100  # the MNIST GAN is cheap: it keeps its full settings
    assert DCGANSettings(epochs=100).epochs_note is None  # asked for all of them: nothing to say
    monkeypatch.setattr(environment, "training_on_cpu", lambda: False)
    assert DCGANSettings().epochs == DCGAN_EPOCHS and DCGANSettings().epochs_note is None
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setattr(environment, "training_on_cpu", lambda: True)
    assert DCGANSettings().epochs_note is None  # smoke mode is reduced anyway, and says so itself
    section = "\n".join(report.run_section("dcgan", {"model": "dcgan", "epochs": 8, "note": note}, {}))
    assert f"*{note}.*" in section


def test_samples_come_from_the_average_of_gs_weights_which_follows_them(mnist_offline):
    torch.manual_seed(0)
    cfg = GANSettings(epochs=1, batch_size=64)
    training = cfg.fresh_training("cpu")
    assert training.sampling_generator is training.modules["generator_average"].module
    fit(training, mnist_offline.train_x[:640], None, epochs=1, batch_size=64, progress=False)
    G, average = training.generator, training.sampling_generator
    assert training.modules["generator_average"].n_averaged.item() == 10  # one update per generator step
    moved = [(a - g).abs().max().item() for a, g in zip(average.parameters(), G.parameters())]
    assert max(moved) > 0  # the average lags the weights ...
    assert torch.equal(training.draw(8, seed=3), (gan.sample(average, 8, seed=3) + 1) / 2)  # ... and draws
    plain = replace(cfg, ema=0.0).fresh_training("cpu")
    assert plain.sampling_generator is plain.generator and "generator_average" not in plain.modules
