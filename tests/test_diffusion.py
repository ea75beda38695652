"""The diffusion family's core against known answers: diffusers' DDPM and DDIM schedulers (the same betas,
alphas-cumprod, noising and one step from the same inputs), the closed form of q(x_t | x_0) against the
forward steps iterated, exact recovery of x_0 by DDIM and Euler from a network that knows the answer, the
flow-matching loss at the exact velocity, and classifier-free guidance at w = 0 and w = 1."""

import math
from dataclasses import replace

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from labkit.diffusion import losses, samplers
from labkit.diffusion.schedule import NoiseSchedule, flow_interpolate
from labkit.diffusion.unet import UNet

DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_schedules_are_diffusers_own(kind):
    ours = NoiseSchedule(kind, 1000)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind])
    torch.testing.assert_close(ours.betas.float(), theirs.betas.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.alphas_cumprod.float(), theirs.alphas_cumprod.float(), rtol=1e-4, atol=1e-7)
    x0, noise = torch.rand(6, 1, 8, 8) * 2 - 1, torch.randn(6, 1, 8, 8)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    torch.testing.assert_close(ours.q_sample(x0, t, noise), theirs.add_noise(x0, noise, t), rtol=1e-4, atol=1e-5)


def test_the_closed_form_matches_the_forward_steps_iterated():
    """q(x_t | x_0) in one step has the mean and variance of t + 1 single steps
    x_s = sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) noise, measured over 20,000 chains."""
    schedule = NoiseSchedule("linear", 1000)
    torch.manual_seed(0)
    x0 = torch.full((20_000, 1, 1, 1), 0.7)
    for t in (0, 99, 499):
        x = x0.clone()
        for s in range(t + 1):
            x = (1 - schedule.betas[s]).sqrt() * x + schedule.betas[s].sqrt() * torch.randn_like(x)
        a = schedule.alphas_cumprod[t]
        closed = schedule.q_sample(x0, torch.full((len(x0),), t), torch.randn_like(x0))
        for draws in (x, closed):
            assert draws.mean().item() == pytest.approx(0.7 * a.sqrt().item(), abs=0.02)
            assert draws.var().item() == pytest.approx(1 - a.item(), abs=0.02)


def test_a_ddpm_step_is_diffusers_step():
    schedule = NoiseSchedule("linear", 1000)
    theirs = DDPMScheduler(num_train_timesteps=1000)  # clipping the estimate of x_0 to [-1, 1], by default
    theirs.set_timesteps(1000)
    torch.manual_seed(1)
    x, eps = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    for t in (999, 500, 1):  # diffusers draws its noise from the generator as torch.randn does
        noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(t))
        expected = theirs.step(eps, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        # diffusers multiplies its alphas in float32, labkit in float64: at t = 999 the estimate of x_0 divides
        # by sqrt(alpha-bar) = 0.006, which turns their rounding (1e-4 relative) into 1e-3 of a pixel
        tolerance = 2e-3 if t == 999 else 1e-4
        ours = samplers.ddpm_step(eps, t, x, schedule, noise)
        torch.testing.assert_close(ours, expected, rtol=tolerance, atol=tolerance)
    expected = theirs.step(eps, 0, x).prev_sample  # the last step adds no noise
    torch.testing.assert_close(samplers.ddpm_step(eps, 0, x, schedule, None), expected, rtol=1e-4, atol=1e-5)


def test_the_first_ancestral_step_of_the_cosine_schedule_keeps_a_slightly_wrong_estimate_in_range():
    """At t = T - 1 the cosine schedule's beta is 0.999 and alpha-bar 2e-9: the clean image estimated from a
    noise prediction 0.1 off is thousands of pixels' range away, and unclipped it threw x_{T-1} to a standard
    deviation near 3, where the network has never seen an input. Clipped, x_{T-1} holds the sqrt(alpha_T) x_T
    that the posterior mean keeps (a few hundredths) plus at most sqrt(alpha-bar_{T-1}) beta_T of the image."""
    schedule = NoiseSchedule("cosine", 1000)
    torch.manual_seed(3)
    x = torch.randn(8, 1, 28, 28)
    eps = x + 0.1 * torch.randn_like(x)  # a good but imperfect prediction: x_T is almost all noise
    t = schedule.steps - 1
    mean = samplers.ddpm_step(eps, t, x, schedule, torch.zeros_like(x))
    a_prev = schedule.alphas_cumprod[t - 1].item()
    bound = math.sqrt(a_prev) * schedule.betas[t].item() / (1 - schedule.alphas_cumprod[t].item())
    keep = math.sqrt(schedule.alphas[t].item()) * (1 - a_prev) / (1 - schedule.alphas_cumprod[t].item())
    torch.testing.assert_close(mean - keep * x, torch.zeros_like(x), atol=bound * 1.0001, rtol=0)
    assert mean.std() < 0.05


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddim_steps_and_timesteps_are_diffusers(kind):
    schedule = NoiseSchedule(kind, 1000)
    theirs = DDIMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[kind], clip_sample=False)
    theirs.set_timesteps(10)
    times = samplers.ddim_timesteps(schedule, 10)
    assert times == theirs.timesteps.tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    torch.manual_seed(2)
    x, eps = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    for t, t_prev in zip(times, times[1:] + [-1]):
        expected = theirs.step(eps, t, x, eta=0.0).prev_sample
        torch.testing.assert_close(samplers.ddim_step(eps, t, t_prev, x, schedule), expected, rtol=1e-4, atol=1e-5)


class Oracle(torch.nn.Module):
    """A "network" that knows the one image it must produce: it returns the true noise of x_t (for the eps
    objective) or the true velocity towards ``target`` (flow), so a correct sampler lands on ``target``."""

    def __init__(self, target: torch.Tensor, objective: str, schedule: NoiseSchedule | None = None):
        super().__init__()
        self.target, self.objective, self.schedule = target, objective, schedule

    def forward(self, x, time, labels=None):
        if self.objective == "eps":
            t = (time * self.schedule.steps).round().long()
            a = self.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
            return (x - a.sqrt() * self.target) / (1 - a).sqrt()
        t = time.view(-1, 1, 1, 1)
        noise = (x - t * self.target) / (1 - t)  # invert x_t = t x1 + (1 - t) noise
        return self.target - noise


@pytest.mark.parametrize(
    "objective, sampler, steps",
    [("eps", "ddim", 1), ("eps", "ddim", 8), ("flow", "euler", 1), ("flow", "euler", 8), ("flow", "heun", 4)],
)
def test_ddim_and_the_flow_samplers_recover_x0_from_a_network_that_knows_it(objective, sampler, steps):
    target = torch.rand(4, 1, 8, 8) * 2 - 1
    schedule = NoiseSchedule("cosine", 1000) if objective == "eps" else None
    out = samplers.sample(
        Oracle(target, objective, schedule), (4, 1, 8, 8), objective=objective, sampler=sampler, steps=steps,
        schedule=schedule, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    torch.testing.assert_close(out, target, rtol=0, atol=1e-4)


def test_ddpm_with_the_true_noise_ends_near_x0():
    """Ancestral sampling adds fresh noise at every step, so it lands near (not exactly on) the target."""
    schedule = NoiseSchedule("linear", 1000)
    target = torch.rand(64, 1, 4, 4) * 2 - 1
    out = samplers.sample(
        Oracle(target, "eps", schedule), target.shape, objective="eps", sampler="ddpm", steps=1000,
        schedule=schedule, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert (out - target).abs().mean() < 0.02


def test_the_flow_matching_loss_is_zero_for_the_exact_velocity_and_not_otherwise():
    x1 = torch.rand(8, 1, 6, 6) * 2 - 1
    torch.manual_seed(3)
    state = torch.get_rng_state()

    def exact(x_t, t, labels):  # the velocity of the straight path through x_t that ends at x1
        t = t.view(-1, 1, 1, 1)
        return x1 - (x_t - t * x1) / (1 - t)

    assert losses.flow_matching_loss(exact, x1).item() == pytest.approx(0, abs=1e-8)
    torch.set_rng_state(state)
    assert losses.flow_matching_loss(lambda x, t, y: torch.zeros_like(x), x1).item() > 0.5
    torch.testing.assert_close(flow_interpolate(x1, torch.zeros_like(x1), torch.ones(8)), x1)


def test_the_eps_loss_is_zero_for_the_true_noise():
    schedule = NoiseSchedule("cosine", 1000)
    x0 = torch.rand(8, 1, 6, 6) * 2 - 1
    oracle = Oracle(x0, "eps", schedule)
    assert losses.eps_loss(oracle, schedule, x0).item() == pytest.approx(0, abs=1e-6)


def test_guidance_weight_zero_is_the_unconditional_prediction_and_one_the_conditional():
    torch.manual_seed(4)
    net = UNet((1, 8, 8), width=8, mults=(1, 2), num_classes=10).eval()
    torch.nn.init.normal_(net.head[-1].weight)  # a network whose prediction depends on the label
    x, time, labels = torch.randn(5, 1, 8, 8), torch.rand(5), torch.tensor([0, 3, 5, 7, 9])
    with torch.no_grad():
        unconditional, conditional = net(x, time, torch.full((5,), 10)), net(x, time, labels)
        assert not torch.allclose(unconditional, conditional)
        torch.testing.assert_close(samplers.guided(net, x, time, labels, 0.0, 10), unconditional)
        torch.testing.assert_close(samplers.guided(net, x, time, labels, 1.0, 10), conditional)
        w3 = samplers.guided(net, x, time, labels, 3.0, 10)
        torch.testing.assert_close(w3, unconditional + 3 * (conditional - unconditional), rtol=1e-4, atol=1e-5)


def test_label_dropout_replaces_the_asked_fraction_with_the_null_label():
    labels = torch.arange(10).repeat(1000)
    dropped = losses.drop_labels(labels, 0.2, 10, generator=torch.Generator().manual_seed(0))
    assert (dropped == 10).float().mean().item() == pytest.approx(0.2, abs=0.02)
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert losses.drop_labels(labels, 0.0, 10) is labels


@pytest.mark.parametrize(
    "objective, sampler, steps, message",
    [
        ("eps", "euler", 8, "--sampler euler does not sample a model trained with --objective eps"),
        ("flow", "ddim", 8, "choose euler or heun"),
        ("flow", "heun", 0, "--sample-steps must be a whole number of at least 1"),
        ("flow", "euler", -3, "at least 1"),
        ("eps", "ddim", 2000, "more than the model's 1000 noise levels"),
        ("score", "ddim", 8, "unknown objective 'score'"),
    ],
)
def test_a_sampler_that_does_not_fit_is_a_clear_error(objective, sampler, steps, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        samplers.check_sampler(objective, sampler, steps, 1000)


def test_network_evaluations_per_sample():
    assert samplers.network_evaluations("ddim", 8) == 8
    assert samplers.network_evaluations("heun", 8) == 15
    assert samplers.network_evaluations("euler", 4, guidance=2.0) == 8  # two predictions mixed per step
    assert samplers.network_evaluations("euler", 4, guidance=1.0) == 4  # the conditional one alone
    assert samplers.network_evaluations("euler", 4, guidance=0.0) == 4  # the unconditional one alone


def test_the_unet_keeps_the_image_shape_and_refuses_sizes_it_cannot_halve():
    for shape in ((1, 28, 28), (3, 32, 32), (3, 64, 64)):
        net = UNet(shape, width=8)
        assert net(torch.randn(2, *shape), torch.rand(2)).shape == (2, *shape)
    with pytest.raises(ValueError, match="must divide by 4"):
        UNet((1, 30, 30))
    parameters = sum(p.numel() for p in UNet().parameters())
    assert 5e5 < parameters < 1.5e6, parameters
    assert math.isfinite(parameters)


# --------------------------------------------------------------------------- the recipe and the command line


TINY = {"width": 8, "mults": (1, 2), "epochs": 1, "sample_steps": 2}


def test_the_progression_starts_every_epoch_from_the_same_noise(mnist_offline):
    """Frames of an unchanged model are identical (the same noise, the same sampler); a training step changes
    them; the recorder's state survives a checkpoint round trip without a latent z."""
    from labkit.diffusion.recipe import DiffusionSettings
    from labkit.progression import FixedNoise

    training = DiffusionSettings(**TINY).training()
    recorder = FixedNoise(training, n=4, seed=3)
    recorder(1, {}, None)
    recorder(2, {}, None)
    assert torch.equal(recorder.frames[0], recorder.frames[1])
    first = recorder.frames[0]
    assert first.shape == (4, 1, 28, 28) and -1 <= first.min() <= first.max() <= 1
    for _ in range(3):
        training.train_step(mnist_offline.train_x[:16])
    recorder(3, {}, None)
    assert not torch.allclose(recorder.frames[1], recorder.frames[2])
    again = FixedNoise(training, n=4, seed=3)
    again.load_state_dict(recorder.state_dict())
    assert again.epochs == [1, 2, 3] and torch.allclose(again.frames[2], recorder.frames[2], atol=1 / 127)


def test_each_sampler_draws_in_its_own_default_number_of_steps(monkeypatch):
    from labkit.diffusion.recipe import DiffusionSettings

    assert (DiffusionSettings().sampler_name, DiffusionSettings().sampling_steps) == ("heun", 16)  # 31 evaluations
    assert DiffusionSettings(sampler="euler").sampling_steps == 32
    assert DiffusionSettings(objective="eps").sampling_steps == 32  # DDIM
    assert DiffusionSettings(objective="eps", sampler="ddpm").sampling_steps == 1000  # every noise level
    assert DiffusionSettings(sample_steps=5).sampling_steps == 5
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    assert DiffusionSettings().sampling_steps == 4
    training = DiffusionSettings(width=8, mults=(1, 2)).training()
    assert (training.sampler, training.sample_steps) == ("heun", 4)


def test_a_conditional_model_trains_its_own_epochs_on_a_cpu_wherever_it_is_asked_for(monkeypatch):
    """Told the digit, the conditional model needs fewer CPU epochs (40 of the unconditional model's 72): the
    command line (``--conditional``) builds it so. Built by replacing a field of
    the default settings, it kept their 72 epochs. What the CPU shrank is said (``cpu_note``)."""
    from labkit import experiments
    from labkit.diffusion.recipe import CPU_EPOCHS, CPU_EPOCHS_CONDITIONAL, DiffusionSettings
    from labkit.engine import environment

    assert (DiffusionSettings().epochs, DiffusionSettings(conditional=True).epochs) == (72, 40)
    assert (CPU_EPOCHS, CPU_EPOCHS_CONDITIONAL) == (72, 40)
    assert experiments.settings_for("diffusion", conditional=True, epochs=None).epochs == 40  # train --conditional
    assert experiments.settings_for("diffusion", conditional=True, epochs=7).epochs == 7  # --epochs 7 wins
    assert DiffusionSettings(conditional=True).cpu_note.startswith(
        "CPU: a diffusion UNet of width 16 on batches of 64 for 40 epochs, so that a run fits in about 15 minutes"
    )  # said by the command line, notebook 05 and the run's metrics.json (the report shows it)
    assert DiffusionSettings(width=32).cpu_note is None  # the course's UNet: nothing shrank
    monkeypatch.setattr(environment, "training_on_cpu", lambda: False)  # a GPU: the course's 30 for both
    assert (DiffusionSettings().epochs, DiffusionSettings(conditional=True).epochs) == (30, 30)
    assert DiffusionSettings().width == 32 and DiffusionSettings().cpu_note is None
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    assert DiffusionSettings(conditional=True).epochs == environment.SMOKE_EPOCHS


def test_the_notebooks_train_fewer_cpu_epochs_than_the_command_line_and_say_so(monkeypatch):
    """So that `make run` of all five notebooks takes about half an hour on 2 cores, notebook 05 (and notebook 04,
    which compares its runs and would otherwise train them on to the command line's epochs) trains
    ``NOTEBOOK_CPU_EPOCHS``: said in the note, and nothing changes on a GPU or in smoke mode."""
    from labkit import compare, run_notebooks
    from labkit.diffusion.recipe import NOTEBOOK_CPU_EPOCHS, NOTEBOOK_CPU_EPOCHS_CONDITIONAL, DiffusionSettings
    from labkit.engine import environment

    assert (NOTEBOOK_CPU_EPOCHS, NOTEBOOK_CPU_EPOCHS_CONDITIONAL) == (20, 10)
    notebook, notebook_cond = DiffusionSettings.for_notebook(), DiffusionSettings.for_notebook(conditional=True)
    assert (notebook.epochs, notebook_cond.epochs) == (20, 10)
    assert (compare.default_settings("diffusion").epochs, compare.default_settings("diffusion-cond").epochs) == (20, 10)
    assert DiffusionSettings.for_notebook(epochs=7, conditional=True).epochs == 7  # asked for: kept
    assert notebook.width == DiffusionSettings().width == 16  # only the epochs differ from the command line's
    assert notebook_cond.cpu_note.startswith(
        "CPU: a diffusion UNet of width 16 on batches of 64 for 10 epochs, fewer than the 40 of "
        "`python -m labkit train diffusion --conditional` (about 15 minutes a run), whose digits are better;"
    )
    assert "fewer than the 72 of `python -m labkit train diffusion` (" in " ".join(run_notebooks._cpu_notes())
    # notebook 05 reuses a longer command-line run as it is: its metrics.json notes the epochs trained
    assert replace(notebook, epochs=72).cpu_note == DiffusionSettings().cpu_note
    monkeypatch.setattr(environment, "training_on_cpu", lambda: False)  # a GPU: the course's 30, as the command line
    assert (DiffusionSettings.for_notebook().epochs, compare.default_settings("diffusion-cond").epochs) == (30, 30)
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    assert DiffusionSettings.for_notebook(conditional=True).epochs == environment.SMOKE_EPOCHS


def test_a_run_records_the_judges_numbers_and_its_figures(tmp_path, mnist_offline):
    from labkit.diffusion.recipe import DiffusionSettings, run_diffusion

    cfg = DiffusionSettings(**TINY, conditional=True)
    trained = run_diffusion(cfg, out=tmp_path / "run", device="cpu", progress=False, data=mnist_offline)
    final = trained.final
    for key in ("fid_classifier", "class_coverage", "class_kl_from_uniform", "conditional_accuracy"):
        assert math.isfinite(final[key]), key
    assert 0 <= final["memorised_fraction"] <= 1 and final["memorisation_threshold"] > 0
    assert final["sampler"] == "heun" and final["sample_steps"] == 2  # flow matching's default sampler
    assert final["network_evaluations"] == 6  # 2 Heun steps: 3 calls, each of the guided pair
    assert final["sampling_seconds_per_1000"] > 0
    assert set(trained.metrics["figures"]) == {
        "loss_curves",
        "samples",
        "trajectory",
        "digit_grid",
        "progression",
        "progression_gif",
    }
    assert (tmp_path / "run" / trained.metrics["figures"]["progression_gif"]).stat().st_size > 0
    assert trained.metrics["model"] == "diffusion" and trained.metrics["hyperparameters"]["objective"] == "flow"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--conditional", "--dataset", "abstract-art"], "needs a label for every image"),
        (["--guidance", "-1"], "guidance must be a weight >= 0"),
        (["--sample-steps", "0"], "--sample-steps must be a whole number of at least 1"),
        (["--sampler", "ddpm"], "--sampler ddpm does not sample a model trained with --objective flow"),
        (["--objective", "eps", "--sampler", "ddpm", "--sample-steps", "50"], "--sampler ddpm visits all 1000"),
        (["--sampler", "plms"], "choose euler or heun"),
        (["--ema", "1"], "--ema must be a decay in [0, 1)"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path, capsys, arguments, message):
    from labkit.__main__ import main

    assert main(["train", "diffusion", "--out", str(tmp_path / "run"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resuming_with_another_objective_is_refused_naming_it(tmp_path, mnist_offline):
    from labkit.diffusion.recipe import DiffusionSettings, run_diffusion
    from labkit.engine.checkpoint import CheckpointError

    options = {"out": tmp_path, "device": "cpu", "progress": False, "data": mnist_offline}
    run_diffusion(DiffusionSettings(**TINY, objective="eps"), **options)
    before = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(CheckpointError, match="objective='eps', this run has objective='flow'"):
        run_diffusion(DiffusionSettings(**{**TINY, "epochs": 2}), **options)
    assert (tmp_path / "metrics.json").read_bytes() == before


def test_the_memorised_fraction_is_one_for_copies_and_near_the_percentile_for_held_out_digits(mnist_offline):
    from labkit.metrics import memorisation

    train, test = mnist_offline.train_x[:2000], mnist_offline.test_x
    copies = memorisation(train[:300], train, test)
    assert copies["memorised_fraction"] == 1.0
    assert torch.equal(copies["nearest_train_index"], torch.arange(300))
    held_out = memorisation(mnist_offline.train_x[2000:2500], train, test)  # digits it never saw
    assert held_out["memorised_fraction"] < 0.05
    noise = memorisation(torch.rand(100, 1, 28, 28), train, test)
    assert noise["memorised_fraction"] == 0.0


def test_the_weights_average_starts_at_the_weights_and_settles_to_its_decay():
    from labkit.diffusion.training import exponential_moving_average

    net = torch.nn.Linear(1, 1, bias=False)
    ema = exponential_moving_average(net, 0.5)
    values = []
    for step, w in enumerate([1.0, 0.0, 0.0, 0.0] + [0.0] * 40):
        net.weight.data.fill_(w)
        ema.update_parameters(net)
        values.append(ema.module.weight.item())
        if step == 0:
            assert values[0] == 1.0  # the first update copies the weights
    assert values[1] == pytest.approx(2 / 6)  # n = 1: the decay is capped at (1 + n) / (5 + n)
    assert values[2] == pytest.approx(values[1] * 3 / 7)  # n = 2: 3/7
    assert values[30] / values[29] == pytest.approx(0.5)  # the cap passes 0.5 at n = 3: the decay itself


def test_drawing_in_batches_gives_the_images_of_drawing_all_at_once(monkeypatch):
    """On a CPU draw samples 128 images at a time from one generator: the same starting noise, labels and path
    as one batch of all of them, so a run's numbers do not depend on the batch its samples were drawn in."""
    from test_diffusion_notebook import _randomised

    from labkit.diffusion import training as diffusion_training
    from labkit.diffusion.recipe import DiffusionSettings

    training = DiffusionSettings(width=8, mults=(1, 2), sample_steps=3, conditional=True).training()
    _randomised(training.ema)
    in_batches: list[torch.Tensor] = []
    images = training.draw(300, seed=5, trajectory=in_batches)
    monkeypatch.setattr(diffusion_training, "DRAW_BATCH", {})
    at_once: list[torch.Tensor] = []
    assert torch.equal(images, training.draw(300, seed=5, trajectory=at_once))
    assert len(in_batches) == 4 and all(torch.equal(a, b) for a, b in zip(in_batches, at_once))
    assert in_batches[-1].shape == (300, 1, 28, 28)


def test_the_learning_rate_warms_up_then_falls_linearly_to_the_last_step():
    from labkit.diffusion.training import learning_rate_factor

    linear = [learning_rate_factor(step, 4, 10, "linear") for step in range(10)]
    assert linear == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert [learning_rate_factor(step, 4, 10, "constant") for step in range(10)] == linear[:4] + [1.0] * 6
    assert learning_rate_factor(7, 0, None, "linear") == 1.0  # the run's length not known yet: no decay
    assert learning_rate_factor(12, 0, 10, "linear") > 0  # steps past the plan (more epochs) still learn


def test_fit_tells_the_training_its_steps_and_the_rate_follows_them(mnist_offline):
    from labkit.diffusion.recipe import DiffusionSettings
    from labkit.engine.loop import fit

    cfg = DiffusionSettings(width=8, mults=(1, 2), lr=1e-3, warmup_steps=2, batch_size=16, epochs=2)
    training = cfg.training("cpu", (1, 28, 28))
    rates = []
    original = training.set_learning_rate

    def recorded():
        original()
        rates.append(training.optimizer.param_groups[0]["lr"])

    training.set_learning_rate = recorded
    fit(training, mnist_offline.train_x[:64], epochs=2, batch_size=16, progress=False)
    assert training.total_steps == 8  # 64 images in batches of 16, 2 epochs
    assert rates == pytest.approx([1e-3 * f for f in (0.5, 1, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6)])
    group = training.optimizer.param_groups[0]
    assert group["steps_taken"] == 8
    del group["steps_taken"]  # an optimiser saved before the count existed: the average's count stands in
    training.set_learning_rate()
    assert group["steps_taken"] == 9 and group["lr"] == pytest.approx(1e-3 / 6)  # past the plan: its floor


def test_on_a_cpu_the_network_and_its_average_are_kept_in_channels_last_memory_and_compute_the_same():
    """``DiffusionTraining`` puts a CPU network in channels-last memory (``training.CHANNELS_LAST``, faster
    convolutions there) before its average copies it; the layout changes where the numbers sit, not what the
    network computes."""
    from torch import nn

    from labkit.diffusion.training import DiffusionTraining

    torch.manual_seed(0)
    net = UNet((1, 28, 28), width=8, mults=(1, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)  # the last layer starts at zero, which would hide any difference
    contiguous = UNet((1, 28, 28), width=8, mults=(1, 2))
    contiguous.load_state_dict(net.state_dict())
    training = DiffusionTraining(net, objective="flow")
    for module in (training.net, training.ema.module):
        kernels = [m.weight for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert kernels and all(w.is_contiguous(memory_format=torch.channels_last) for w in kernels)
    x, time = torch.randn(4, 1, 28, 28), torch.rand(4)
    with torch.no_grad():
        assert torch.allclose(training.net.eval()(x, time), contiguous.eval()(x, time), atol=1e-5)
