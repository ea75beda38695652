"""Everything a student runs is correct under CUDA's rules, checked on a CPU (``tests/cuda_rules.py``).

Every training of the course trains and evaluates an epoch in mixed precision with autocast refusing
what CUDA refuses; checkpoints saved on a GPU load on the CPU and the other way round; a run saved on
Kaggle's two GPUs resumes on one; Colab's shell gets live plots; a GPU too old for torch is refused
with advice; float32 on Apple's MPS needs no autocast at all.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from cuda_rules import CUDA_AUTOCAST_REFUSAL, save_as_if_on_gpu
from test_checkpoint import _ae_run  # the same small checkpointed AE run

from labkit import compare, metrics, plots, progression
from labkit.ae import AESettings, Autoencoder, AutoencoderTraining, run_ae
from labkit.data import load_mnist
from labkit.diffusion.recipe import DiffusionSettings
from labkit.engine import checkpoint as ckpt
from labkit.engine import environment
from labkit.engine.loop import evaluate, fit
from labkit.engine.training import Precision
from labkit.gan import nets as gan_nets
from labkit.gan.recipe import CGANSettings, DCGANSettings, GANSettings
from labkit.vae import VAETraining, make_vae
from labkit.vae.cvae import CVAESettings
from labkit.vae.vqvae import VQVAESettings

pytestmark = pytest.mark.gpu_emulation


# --------------------------------------------------------------------------- autocast


def test_the_emulation_refuses_binary_cross_entropy_under_autocast_as_cuda_does(cuda_autocast_rules):
    p, x = torch.rand(4, 3), torch.rand(4, 3).round()
    F.binary_cross_entropy(p, x)  # autocast off: allowed, as on CUDA
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="unsafe to autocast"):
            F.binary_cross_entropy(p, x)
        with pytest.raises(RuntimeError, match="unsafe to autocast"):
            torch.nn.BCELoss()(p, x)
        F.binary_cross_entropy_with_logits(torch.logit(p), x)  # the safe form goes through
    assert CUDA_AUTOCAST_REFUSAL.startswith("torch.nn.functional.binary_cross_entropy")


# trainings whose steps take the labels too
LABELLED = ("classifier", "cvae", "cgan", "cgan-wgan-gp-sn", "diffusion-flow-cond")


def _every_training():
    """(name, a fresh training, images, batch size, labels) for every training of the course."""

    def ae(x):
        return AutoencoderTraining(Autoencoder(latent_dim=8))

    def vae(x):
        return VAETraining(make_vae("default"))

    def mlp_gan(x):
        return GANSettings(epochs=1).training(*gan_nets.mlp_gan())

    def dcgan(x, **options):
        cfg = DCGANSettings(epochs=1, dataset="mnist", width=16, **options)
        return cfg.training(*cfg.networks())

    def wgan_gp(x):  # the gradient penalty's double backward, with float16's gradient scaler
        cfg = GANSettings(epochs=1, loss="wgan-gp", n_critic=2)
        return cfg.training(*cfg.networks())

    def classifier(x):
        return metrics.ClassifierTraining(metrics.DigitClassifier())

    def cgan(x, **options):  # the labels reach both networks, and the penalty's critic
        cfg = CGANSettings(epochs=1, **options)
        return cfg.training(*cfg.networks())

    return {
        "cvae": lambda x: CVAESettings(epochs=1).training(),
        "vqvae": lambda x: VQVAESettings(epochs=1).training(),
        "ae": ae,
        "vae": vae,
        "gan": mlp_gan,
        "dcgan": dcgan,
        "gan-wgan-gp": wgan_gp,
        "dcgan-wgan-gp-sn": lambda x: dcgan(x, loss="wgan-gp", spectral_norm=True),
        "dcgan-sn": lambda x: dcgan(x, spectral_norm=True),
        "classifier": classifier,
        "cgan": cgan,
        "cgan-wgan-gp-sn": lambda x: cgan(x, loss="wgan-gp", n_critic=2, spectral_norm=True),
        "diffusion-eps": lambda x: DiffusionSettings(epochs=1, objective="eps", width=8, mults=(1, 2)).training(),
        "diffusion-flow-cond": lambda x: DiffusionSettings(
            epochs=1, conditional=True, width=8, mults=(1, 2)
        ).training(),
    }


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", list(_every_training()))
def test_every_training_trains_and_evaluates_an_epoch_in_mixed_precision_under_cudas_rules(
    name, precision, cuda_autocast_rules, mnist_offline
):
    torch.manual_seed(0)
    x, y = mnist_offline.train_x[:192], mnist_offline.train_y[:192]
    test_x, test_y = mnist_offline.test_x[:100], mnist_offline.test_y[:100]
    training = _every_training()[name](x)
    conditional = name in LABELLED
    labels = {"train_y": y, "test_y": test_y} if conditional else {}
    history = fit(training, x, test_x, epochs=1, batch_size=64, progress=False, precision=precision, **labels)
    record = history.last
    assert record["epoch"] == 1 and any(k.startswith("test_") for k in record)
    assert all(math.isfinite(v) for v in record.values()), record
    assert training.precision.mode == precision
    again = evaluate(training, test_x, test_y if conditional else None)  # the notebooks' own call
    assert all(math.isfinite(v) for v in again.values())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("kind", ["eps", "flow-cond"])
def test_diffusion_draws_finite_float32_images_after_mixed_precision_training_and_under_autocast(
    kind, precision, cuda_autocast_rules, mnist_offline
):
    """The fixed-noise progression draws after every epoch of a mixed-precision run (float16 with its gradient
    scaler), and a notebook may call ``draw`` inside autocast: the sampler keeps x in float32 either way, and
    the images autocast gives differ from float32's, by less than a grey level of an 8-bit picture."""
    torch.manual_seed(0)
    conditional = kind == "flow-cond"
    objective = {"objective": "flow", "conditional": True} if conditional else {"objective": "eps"}
    training = DiffusionSettings(epochs=1, width=8, mults=(1, 2), sample_steps=2, **objective).training()
    recorder = progression.FixedNoise(training, n=4)
    labels = {"train_y": mnist_offline.train_y[:64], "test_y": mnist_offline.test_y[:32]} if conditional else {}
    x, test_x = mnist_offline.train_x[:64], mnist_offline.test_x[:32]
    history = fit(
        training,
        x,
        test_x,
        epochs=1,
        batch_size=32,
        progress=False,
        precision=precision,
        callbacks=[recorder],
        **labels,
    )
    assert training.precision.scaler.is_enabled() == (precision == "fp16")
    assert math.isfinite(history.last["test_loss"]) and torch.isfinite(recorder.frames[0]).all()
    plain = training.draw(8, seed=1)
    with training.precision.autocast():
        mixed = training.draw(8, seed=1)
    for images in (plain, mixed):
        assert images.dtype == torch.float32 and images.shape == (8, 1, 28, 28)
        assert torch.isfinite(images).all() and 0 <= images.min() <= images.max() <= 1
    assert 0 < (mixed - plain).abs().max() < 1 / 255  # autocast did compute in half precision


def test_the_autoencoders_test_bce_is_the_bernoulli_nll_of_its_reconstructions(cuda_autocast_rules, mnist_offline):
    model = Autoencoder(latent_dim=8)
    training = AutoencoderTraining(model)
    training.precision = Precision("cpu", "bf16")
    x = mnist_offline.test_x[:50]
    result = evaluate(training, x)  # under autocast: this is where notebook 01 stopped on a GPU
    with torch.no_grad():
        r = model(x).clamp(1e-6, 1 - 1e-6)
        expected = -(x * r.log() + (1 - x) * (1 - r).log()).sum() / len(x)
    assert result["bce"] == pytest.approx(float(expected), rel=2e-2)  # bf16 matmuls: about 1 %


def test_reconstruction_metrics_run_under_autocast(cuda_autocast_rules, mnist_offline):
    ae = Autoencoder(latent_dim=8).eval()
    x = mnist_offline.test_x[:64]
    plain = metrics.reconstruction_errors(ae, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = metrics.reconstruction_errors(ae, x)
    assert mixed["bce_nats"] == pytest.approx(plain["bce_nats"], rel=2e-2)


# --------------------------------------------------------------------------- checkpoints across devices


def test_a_run_saved_on_a_gpu_resumes_on_the_cpu_and_ends_like_an_uninterrupted_run(
    tmp_path, monkeypatch, mnist_offline
):
    x = mnist_offline.train_x[:256]
    full, full_history = _ae_run(x, 3, tmp_path / "full")
    with monkeypatch.context() as gpu:
        save_as_if_on_gpu(gpu)
        _ae_run(x, 2, tmp_path / "cut")  # "a GPU session", cut off after 2 epochs
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really is a GPU checkpoint
        torch.load(tmp_path / "cut" / ckpt.FILE_NAME, weights_only=True)
    resumed, resumed_history = _ae_run(x, 3, tmp_path / "cut", seed=7)  # resumed on the CPU
    assert [r["test_loss"] for r in resumed_history] == [r["test_loss"] for r in full_history]
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore:.*to a meta parameter")
def test_notebook_04_reuses_a_cpu_run_on_another_device(tmp_path, monkeypatch, mnist_offline):
    """The 'meta' device stands in for the GPU: its tensors hold no data, so anything that needs a
    CPU tensor (the random generators' states) fails there exactly as it does on a CUDA device.
    Before the fix notebook 04 loaded checkpoints to the device and stopped here on every GPU."""
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    cfg = AESettings(epochs=1)
    run_ae(cfg, progress=False)  # notebook 01, on the CPU
    saved = ckpt.safe_load(tmp_path / "runs" / "ae" / ckpt.FILE_NAME)
    data = load_mnist("cpu", verbose=False)  # the same smoke-mode split
    model = compare.trained("ae", data, torch.device("meta"), cfg, progress=False)  # notebook 04, "on a GPU"
    assert model.reused and len(model.history) == 1
    assert all(p.device.type == "meta" for p in model.training.model.parameters())
    assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])  # generators restored from CPU tensors
    assert all(t.device.type == "cpu" for t in _tensors(saved))


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _tensors(value)


@pytest.mark.parametrize("saved_on, resumed_on", [(2, 1), (1, 2), (2, 0), (0, 1)])
def test_generator_states_of_as_many_gpus_as_exist_are_restored(fake_gpus, saved_on, resumed_on):
    gpus = fake_gpus(saved_on)
    state = environment.rng_state()
    assert len(state.get("cuda", [])) == saved_on
    state = ckpt.safe_load(
        ckpt.atomic_save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "rng": state}, _tmp_file())
    )["rng"]
    gpus = fake_gpus(resumed_on)
    environment.set_rng_state(state)  # Kaggle's 2 x T4 -> Colab's one T4: device 1 is not there
    assert sorted(gpus.restored) == list(range(min(saved_on, resumed_on)))
    for index, restored in gpus.restored.items():
        assert torch.equal(restored, torch.full((16,), 10 + index, dtype=torch.uint8))


def _tmp_file():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp()) / "rng.pt"


# --------------------------------------------------------------------------- platforms and devices


def test_live_loss_plots_appear_in_colabs_shell(colab_shell, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda fig, display_id=None: shown.append(fig) or _Handle())
    assert type(colab_shell).__name__ == "Shell" and plots.in_notebook()
    history = [{"epoch": 1, "train_loss": 0.5, "test_loss": 0.6}]
    from labkit.engine.training import History

    plots.LiveLossPlot()(1, history[0], History(history))
    assert len(shown) == 1


class _Handle:
    def update(self, fig):
        pass


def test_a_terminal_ipython_is_not_a_notebook(monkeypatch):
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    monkeypatch.setattr("IPython.get_ipython", lambda: object.__new__(TerminalInteractiveShell))
    assert not plots.in_notebook()


def test_a_gpu_this_torch_cannot_run_falls_back_to_the_cpu_and_says_what_to_choose(fake_gpu_model, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setattr(environment, "_announced", set())
    fake_gpu_model("Tesla P100-PCIE-16GB", (6, 0))
    assert environment.pick_device() == torch.device("cpu")
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "Tesla P100-PCIE-16GB, compute capability 6.0" in line
    assert "on Kaggle choose Settings > Accelerator > GPU T4 x2" in line
    with pytest.raises(RuntimeError, match="not supported.*GPU T4 x2"):
        environment.pick_device("cuda")


@pytest.mark.parametrize(
    "capability, arch_list, supported",
    [
        ((7, 5), ["sm_75", "sm_80"], True),  # T4
        ((8, 9), ["sm_75", "sm_80", "sm_86"], True),  # L4: sm_86 kernels run on 8.9
        ((9, 0), ["sm_80", "compute_80"], True),  # H100 through PTX compiled on the fly
        ((6, 0), ["sm_75", "sm_80", "compute_70"], False),  # P100: nothing for 6.x
        ((7, 0), ["sm_75", "sm_80"], False),  # V100: sm_75 kernels need 7.5
        ((9, 0), ["sm_90a"], True),
    ],
)
def test_which_gpus_a_torch_build_supports(fake_gpu_model, capability, arch_list, supported):
    fake_gpu_model("some GPU", capability, arch_list)
    assert (environment.unsupported_gpu() is None) is supported


def test_a_supported_gpu_is_used(fake_gpu_model, monkeypatch):
    monkeypatch.setattr(environment, "_announced", set())
    fake_gpu_model("Tesla T4", (7, 5))
    assert environment.pick_device() == torch.device("cuda")


def test_float32_needs_no_autocast_at_all_so_older_torch_on_apples_mps_is_not_asked(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("User specified an unsupported autocast device_type 'mps'")

    monkeypatch.setattr(torch, "autocast", refuse)
    with Precision("mps", "fp32").autocast():
        pass
    with Precision("cpu", "auto").autocast():
        pass
