"""The exercise checks (right answers pass; wrong values, shapes, types and stubs get a message in words),
the notebooks' exercise cells, and their Questions cells against ``labkit.report.PARTS``."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labkit import exercises, report

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_PARTS = {
    "01_ae.ipynb": "ae",
    "02_vae.ipynb": "vae",
    "03_gan_abstract_art.ipynb": "gan",
    "04_compare.ipynb": "compare",
    "05_diffusion.ipynb": "diffusion",
}


def stub(*args):
    raise NotImplementedError("replace this line with your code")


# --------------------------------------------------------------------------- KL (notebook 02)


def kl_right(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu**2 - torch.exp(logvar), dim=1)


def test_a_correct_kl_passes_and_says_what_it_was_compared_with():
    verdict = exercises.check_kl(kl_right)
    assert verdict.status == "correct" and bool(verdict)
    assert repr(verdict) == "correct: kl_right matches labkit.vae.kl_divergence on 5 random cases."


def test_kl_summed_over_the_wrong_axis_names_both_shapes():
    verdict = exercises.check_kl(lambda mu, logvar: kl_right(mu, logvar).unsqueeze(1).expand(-1, 3))
    assert verdict.status == "wrong" and not verdict
    assert "expected one number per image, shape (" in verdict.message and "returned shape (" in verdict.message


def test_kl_averaged_over_the_batch_is_a_shape_error_not_a_torch_traceback():
    verdict = exercises.check_kl(lambda mu, logvar: kl_right(mu, logvar).mean())
    assert verdict.status == "wrong"
    assert "returned shape () (one number)" in verdict.message and "one number per image" in verdict.message


def test_kl_with_a_flipped_sign_is_told_to_check_the_sign():
    verdict = exercises.check_kl(lambda mu, logvar: -kl_right(mu, logvar))
    assert verdict.status == "wrong" and "negative of the right answer" in verdict.message


def test_kl_with_sigma_in_place_of_sigma_squared_shows_both_values():
    def kl_wrong(mu, logvar):
        return -0.5 * torch.sum(1 + logvar - mu**2 - torch.exp(0.5 * logvar), dim=1)

    verdict = exercises.check_kl(kl_wrong)
    assert verdict.status == "wrong"
    assert verdict.message.startswith("not yet right: on case 1") and "largest difference" in verdict.message


@pytest.mark.parametrize(
    "result, words",
    [
        (
            lambda mu, logvar: kl_right(mu, logvar).tolist(),
            "returned a list; expected one number per image as a torch tensor",
        ),
        (lambda mu, logvar: None, "returned None: did you forget `return`?"),
        (lambda mu, logvar: "kl", "returned a str"),
        (lambda mu, logvar: True, "returned a bool"),
    ],
)
def test_kl_of_the_wrong_type_says_what_was_expected(result, words):
    verdict = exercises.check_kl(result)
    assert verdict.status == "wrong" and words in verdict.message


def test_kl_returning_numpy_is_accepted_when_the_numbers_are_right():
    assert exercises.check_kl(lambda mu, logvar: kl_right(mu, logvar).numpy()).status == "correct"


def test_kl_that_crashes_reports_the_error_in_one_line():
    verdict = exercises.check_kl(lambda mu, logvar: mu @ logvar)  # (B, D) @ (B, D): shapes do not fit
    assert verdict.status == "wrong"
    assert verdict.message.startswith("your <lambda> raised RuntimeError on mu and logvar of shape (")
    assert "Traceback" not in verdict.message


def test_passing_the_result_instead_of_the_function_is_explained():
    verdict = exercises.check_kl(kl_right(torch.zeros(2, 3), torch.zeros(2, 3)))
    assert verdict.status == "wrong" and "pass your function itself" in verdict.message and "Tensor" in verdict.message


def test_a_stub_is_not_done_yet_rather_than_an_error():
    verdict = exercises.check_kl(stub)
    assert verdict.status == "not done"
    assert verdict.message == (
        "not done yet: stub still raises NotImplementedError. Replace that line with your code and run the cell again."
    )


def test_a_check_does_not_change_the_notebooks_random_numbers():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    exercises.check_kl(kl_right)
    exercises.check_reparameterize(lambda mu, logvar: mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
    torch.testing.assert_close(torch.rand(3), expected)


# --------------------------------------------------------------------------- reparameterize (notebook 02)


def reparameterize_right(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def test_a_correct_reparameterisation_passes():
    assert exercises.check_reparameterize(reparameterize_right).status == "correct"


@pytest.mark.parametrize(
    "answer, words",
    [
        (
            lambda mu, logvar: mu + torch.exp(logvar) * torch.randn_like(mu),
            "That is exp(logvar): sigma is exp(logvar / 2)",
        ),
        (lambda mu, logvar: torch.exp(0.5 * logvar) * torch.randn_like(mu), "have mean"),
        (lambda mu, logvar: mu + torch.exp(0.5 * logvar), "returned the same z twice"),
        (lambda mu, logvar: torch.normal(mu.detach(), torch.exp(0.5 * logvar.detach())), "no gradient flows"),
        (lambda mu, logvar: mu + torch.randn_like(mu), "standard deviation"),
        (
            lambda mu, logvar: reparameterize_right(mu, logvar)[:, :1],
            "expected one sample z per row of mu, the same shape",
        ),
        (lambda mu, logvar: reparameterize_right(mu, logvar).tolist(), "returned a list"),
    ],
)
def test_wrong_reparameterisations_are_explained(answer, words):
    verdict = exercises.check_reparameterize(answer)
    assert verdict.status == "wrong" and words in verdict.message, verdict.message


def test_reparameterize_stub_and_non_function():
    assert exercises.check_reparameterize(stub).status == "not done"
    assert "pass your function itself" in exercises.check_reparameterize(3.0).message


# --------------------------------------------------------------------------- MSE per pixel (notebook 01)


@pytest.mark.parametrize(
    "answer",
    [
        lambda x, x_rec: ((x - x_rec) ** 2).mean(),
        lambda x, x_rec: float(((x - x_rec) ** 2).mean()),  # a plain Python number is fine
        lambda x, x_rec: F.mse_loss(x, x_rec),
    ],
)
def test_correct_mse_per_pixel_answers_pass(answer):
    assert exercises.check_mse_per_pixel(answer).status == "correct"


@pytest.mark.parametrize(
    "answer, words",
    [
        (
            lambda x, x_rec: ((x - x_rec) ** 2).flatten(1).sum(1).mean(),
            "784 times the right answer, the number of pixels per image",
        ),
        (lambda x, x_rec: ((x - x_rec) ** 2).sum(), "the number of pixels in the batch: average instead of summing"),
        (lambda x, x_rec: ((x - x_rec) ** 2).flatten(1).mean(1), "expected one number for the whole batch"),
        (lambda x, x_rec: (x - x_rec).abs().mean(), "not yet right"),
        (lambda x, x_rec: np.float64("nan"), "inf or nan"),
    ],
)
def test_wrong_mse_per_pixel_answers_are_explained(answer, words):
    verdict = exercises.check_mse_per_pixel(answer)
    assert verdict.status == "wrong" and words in verdict.message, verdict.message


# --------------------------------------------------------------------------- discriminator loss (notebook 03)


def d_loss_right(real_logits, fake_logits):
    return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())


def test_a_correct_discriminator_loss_passes():
    assert exercises.check_discriminator_loss(d_loss_right).status == "correct"


@pytest.mark.parametrize(
    "answer, words",
    [
        (lambda r, f: -(F.logsigmoid(r).sum() + F.logsigmoid(-f).sum()), "the batch size: average over the batch"),
        (lambda r, f: -(F.logsigmoid(r) + F.logsigmoid(-f)), "expected one number for the batch"),
        (lambda r, f: d_loss_right(f, r), "not yet right"),
        (lambda r, f: -d_loss_right(r, f), "negative of the right answer"),
        (lambda r, f: [d_loss_right(r, f)], "returned a list"),
    ],
)
def test_wrong_discriminator_losses_are_explained(answer, words):
    verdict = exercises.check_discriminator_loss(answer)
    assert verdict.status == "wrong" and words in verdict.message, verdict.message


# --------------------------------------------------------------------------- diffusion (notebook 05)


def q_sample_right(x0, t, noise, schedule):
    alpha_bar = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise


def ddim_step_right(eps, t, t_prev, x, schedule):
    a_t = schedule.alphas_cumprod[t]
    a_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def flow_loss_right(net, x1, noise, t):
    t_ = t.view(-1, 1, 1, 1)
    return F.mse_loss(net(t_ * x1 + (1 - t_) * noise, t), x1 - noise)


@pytest.mark.parametrize(
    "check, answer",
    [
        (exercises.check_q_sample, q_sample_right),
        (exercises.check_ddim_step, ddim_step_right),
        (exercises.check_flow_matching_loss, flow_loss_right),
    ],
)
def test_correct_diffusion_answers_pass_and_stubs_are_not_done(check, answer):
    assert check(answer).status == "correct", check(answer).message
    assert check(stub).status == "not done"
    assert "pass your function itself" in check(1.0).message


def _alpha_bar(schedule, t):
    return schedule.alphas_cumprod[t].view(-1, 1, 1, 1)


@pytest.mark.parametrize(
    "answer, words",
    [
        (
            lambda x0, t, noise, s: _alpha_bar(s, t) * x0 + (1 - _alpha_bar(s, t)) * noise,
            "both weights need their square root",
        ),
        (
            lambda x0, t, noise, s: (1 - _alpha_bar(s, t)).sqrt() * x0 + _alpha_bar(s, t).sqrt() * noise,
            "The two weights are swapped",
        ),
        (
            lambda x0, t, noise, s: (
                s.alphas[t].view(-1, 1, 1, 1).sqrt() * x0 + (1 - s.alphas[t].view(-1, 1, 1, 1)).sqrt() * noise
            ),
            "needs the product alpha-bar_t",
        ),
        (lambda x0, t, noise, s: s.alphas_cumprod[t].sqrt() * x0, "raised RuntimeError"),  # (B,) with (B, 1, 9, 9)
    ],
)
def test_wrong_q_samples_are_explained(answer, words):
    verdict = exercises.check_q_sample(answer)
    assert verdict.status == "wrong" and words in verdict.message, verdict.message


def ddim_to_alphas_cumprod_at_minus_one(eps, t, t_prev, x, schedule):
    return ddim_step_right(eps, t, t_prev if t_prev >= 0 else len(schedule.alphas_cumprod) - 1, x, schedule)


def ddim_estimate_only(eps, t, t_prev, x, schedule):
    a_t = schedule.alphas_cumprod[t]
    return (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()


@pytest.mark.parametrize(
    "answer, words",
    [
        (ddim_to_alphas_cumprod_at_minus_one, "alpha-bar_prev is 1"),
        (ddim_estimate_only, "That is the estimate of x_0"),
        (lambda eps, t, t_prev, x, schedule: x - eps, "not yet right"),
    ],
)
def test_wrong_ddim_steps_are_explained(answer, words):
    verdict = exercises.check_ddim_step(answer)
    assert verdict.status == "wrong" and words in verdict.message, verdict.message


def _flow_loss(path, target, reduce=torch.mean):
    def loss(net, x1, noise, t):
        t_ = t.view(-1, 1, 1, 1)
        return reduce((net(path(x1, noise, t_), t) - target(x1, noise)) ** 2)

    return loss


@pytest.mark.parametrize(
    "answer, words",
    [
        (
            _flow_loss(lambda x1, noise, t: t * noise + (1 - t) * x1, lambda x1, noise: x1 - noise),
            "Your path runs from the data at t = 0",
        ),
        (
            _flow_loss(lambda x1, noise, t: t * x1 + (1 - t) * noise, lambda x1, noise: noise - x1),
            "The target points from the data to the noise",
        ),
        (
            _flow_loss(lambda x1, noise, t: t * x1 + (1 - t) * noise, lambda x1, noise: noise),
            "not the noise (that is DDPM's target)",
        ),
        (
            _flow_loss(lambda x1, noise, t: t * x1 + (1 - t) * noise, lambda x1, noise: x1),
            "not the image x1 itself",
        ),
        (
            _flow_loss(lambda x1, noise, t: t * x1 + (1 - t) * noise, lambda x1, noise: x1 - noise, torch.sum),
            "average instead of summing",
        ),
    ],
)
def test_wrong_flow_matching_losses_are_explained(answer, words):
    verdict = exercises.check_flow_matching_loss(answer)
    assert verdict.status == "wrong" and words in verdict.message, verdict.message


# --------------------------------------------------------------------------- the notebooks' exercise cells


def _text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _exercise_cells():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = _text(cell)
            if cell["cell_type"] == "code" and "exercises.check_" in source:
                yield pytest.param(source, id=f"{path.stem}:{cell['id']}")


@pytest.mark.parametrize("source", list(_exercise_cells()))
def test_each_committed_exercise_cell_runs_and_says_not_done_yet(source):
    namespace = {"exercises": exercises}
    *body, last = source.rstrip().splitlines()
    exec("\n".join(body), namespace)  # the student's stub
    verdict = eval(last, namespace)  # the check, the cell's last line
    assert verdict.status == "not done", verdict.message


def test_every_notebook_offers_an_exercise():
    assert sorted({p.values[0].split("exercises.")[-1].split("(")[0] for p in _exercise_cells()}) == [
        "check_ddim_step",
        "check_discriminator_loss",
        "check_flow_matching_loss",
        "check_kl",
        "check_mse_per_pixel",
        "check_q_sample",
        "check_reparameterize",
    ]


@pytest.mark.parametrize("name", sorted(NOTEBOOK_PARTS))
def test_questions_cell_lists_the_reports_guiding_questions(name):
    part = next(p for p in report.PARTS if p.key == NOTEBOOK_PARTS[name])
    cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
    questions = [_text(c) for c in cells if c["cell_type"] == "markdown" and _text(c).startswith("## Questions")]
    assert len(questions) == 1, f"{name}: expected one '## Questions' cell"
    listed = re.findall(r"^\d+\. (.+)$", questions[0], flags=re.M)
    assert listed == list(part.questions), (
        f"{name}: the Questions cell must list labkit.report.PARTS[{part.key!r}].questions, one per line:\n"
        + "\n".join(f"{i}. {q}" for i, q in enumerate(part.questions, 1))
    )
