"""Notebook 05 writes out what ``labkit.diffusion`` holds: its UNet, q(x_t | x_0), the two objectives, the DDIM and
Euler samplers and classifier-free guidance. These tests run those cells alone and compare them with labkit's
copies (the same layer names and shapes, the same outputs from the same weights and random numbers), so that the
notebook and ``python -m labkit train diffusion`` train and sample the same model. They also check that the
notebook explains every name it carries across sections and really uses the code it teaches."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_notebook import _code_trees, _loads, _text, _top_level_calls, cross_section_names, registered_sections
from torch import nn

from labkit.diffusion import losses, samplers
from labkit.diffusion.schedule import NoiseSchedule, to_unit
from labkit.diffusion.unet import UNet

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "05_diffusion.ipynb"
# How each cell is found: a line it alone holds
UNET_CELL, Q_SAMPLE_CELL, OBJECTIVES_CELL, SAMPLERS_CELL = (
    "# notebook UNet",
    "def q_sample(",
    "# notebook objectives",
    "def ddim_step(",
)


def _notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


def _cell(marker: str) -> str:
    found = [_text(c) for c in _notebook()["cells"] if c["cell_type"] == "code" and marker in _text(c)]
    assert len(found) == 1, f"expected one code cell of notebook 05 holding {marker!r}, found {len(found)}"
    return found[0]


def _run_cells(*markers: str, **names) -> dict:
    """The namespace after running the cells holding ``markers``, in order, on top of the notebook's imports
    that they use (and ``names``)."""
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math, **names}
    for marker in markers:
        exec(compile(_cell(marker), f"05_diffusion.ipynb ({marker})", "exec"), namespace)
    return namespace


def _randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """``net`` with every weight redrawn: the UNet's last layer starts at zero, which would hide any difference."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return net.eval()


# --------------------------------------------------------------------------- the UNet


@pytest.mark.parametrize(
    "shape, width, mults, num_classes",
    [
        ((1, 28, 28), 32, (1, 2, 2), 0),  # the default
        ((1, 28, 28), 8, (1, 2, 2), 10),  # smoke mode's width, conditional
        ((1, 28, 28), 12, (1, 2, 2), 10),  # a width that is not a multiple of 8: fewer GroupNorm groups
        ((3, 32, 32), 16, (1, 2, 2, 4), 0),  # colour images, four levels
    ],
)
def test_the_notebooks_unet_is_labkits(shape, width, mults, num_classes):
    ours = _run_cells(UNET_CELL)["UNet"](shape, width, mults, num_classes=num_classes)
    theirs = UNet(shape, width, mults, num_classes=num_classes)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    assert (ours.image_shape, ours.width, ours.mults, ours.num_classes) == (
        theirs.image_shape,
        theirs.width,
        theirs.mults,
        theirs.num_classes,
    )
    x = torch.randn(3, *shape)
    time = torch.tensor([0.0, 0.37, 1.0])
    with torch.no_grad():
        assert torch.equal(ours(x, time), torch.zeros_like(x)) and torch.equal(theirs(x, time), torch.zeros_like(x))
        ours.load_state_dict(_randomised(theirs).state_dict())  # strict: every name and shape must fit
        ours.eval()
        labels = torch.tensor([0, 9, 4]) if num_classes else None
        expected = theirs(x, time, labels)
        assert expected.shape == x.shape and expected.abs().sum() > 0
        torch.testing.assert_close(ours(x, time, labels), expected, rtol=0, atol=0)
        if num_classes:  # no labels given to a conditional network: the "no label" class, in both
            torch.testing.assert_close(ours(x, time), theirs(x, time), rtol=0, atol=0)


# --------------------------------------------------------------------------- the forward process and the objectives


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_notebooks_q_sample_is_labkits(kind):
    schedule = NoiseSchedule(kind, 1000)
    x0, noise = torch.rand(6, 1, 28, 28) * 2 - 1, torch.randn(6, 1, 28, 28)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    q_sample = _run_cells(Q_SAMPLE_CELL)["q_sample"]
    torch.testing.assert_close(q_sample(x0, t, noise, schedule), schedule.q_sample(x0, t, noise), rtol=0, atol=0)


@pytest.mark.parametrize("num_classes", [0, 10])
def test_the_notebooks_objectives_are_labkits_draw_for_draw(num_classes):
    """From the same random numbers, the notebook's losses are labkit's: the same times and noise, drawn in the
    same order, the same path and target."""
    cells = _run_cells(Q_SAMPLE_CELL, OBJECTIVES_CELL)
    net = _randomised(UNet((1, 28, 28), 8, num_classes=num_classes))
    x0 = torch.rand(5, 1, 28, 28) * 2 - 1
    labels = torch.tensor([1, 2, 3, 4, 10]) if num_classes else None
    schedule = NoiseSchedule("cosine", 1000)
    for seed in (0, 1):
        with torch.no_grad():
            torch.manual_seed(seed)
            ours = cells["eps_loss"](net, schedule, x0, labels)
            torch.manual_seed(seed)
            torch.testing.assert_close(ours, losses.eps_loss(net, schedule, x0, labels), rtol=0, atol=0)
            for density in losses.TIME_DENSITIES:
                torch.manual_seed(seed)
                ours = cells["flow_matching_loss"](net, x0, labels, density)
                torch.manual_seed(seed)
                theirs = losses.flow_matching_loss(net, x0, labels, density)
                torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("objective", ["eps", "flow"])
def test_the_notebooks_training_step_is_labkits(objective):
    """Steps of the notebook's ``DenoiserTraining`` and of labkit's ``DiffusionTraining`` from the same weights
    and random numbers end with the same weights, average and learning rate: the warm-up and the falling rate,
    the labels dropped, the loss, zero_grad / backward / step and the average are the same."""
    from labkit.diffusion.losses import drop_labels
    from labkit.diffusion.schedule import to_signed
    from labkit.diffusion.training import DiffusionTraining

    names = {"DiffusionTraining": DiffusionTraining, "drop_labels": drop_labels, "to_signed": to_signed}
    notebook_class = _run_cells(Q_SAMPLE_CELL, OBJECTIVES_CELL, "class DenoiserTraining(", **names)["DenoiserTraining"]
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5])
    trained = []
    for training_class in (notebook_class, DiffusionTraining):
        net = _randomised(UNet((1, 28, 28), 8, (1, 2), num_classes=10)).train()
        training = training_class(
            net, objective=objective, lr=1e-3, lr_schedule="linear", warmup_steps=2, time_density="logit-normal"
        )
        training.plan(5)
        torch.manual_seed(0)
        for _ in range(4):
            training.train_step(x, y)
        trained.append(training)
    ours, theirs = trained
    for name in ("net", "ema"):
        for key, value in ours.modules[name].state_dict().items():
            torch.testing.assert_close(value, theirs.modules[name].state_dict()[key], rtol=0, atol=0, msg=key)
    assert ours.optimizer.param_groups[0]["lr"] == theirs.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 3)


# --------------------------------------------------------------------------- the samplers


def test_the_notebooks_ddim_step_and_guidance_are_labkits():
    cells = _run_cells(SAMPLERS_CELL)
    schedule = NoiseSchedule("cosine", 1000)
    x, eps = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    for t, t_prev in ((999, 749), (500, 250), (250, 0), (0, -1)):
        torch.testing.assert_close(
            cells["ddim_step"](eps, t, t_prev, x, schedule), samplers.ddim_step(eps, t, t_prev, x, schedule)
        )
    net = _randomised(UNet((1, 28, 28), 8, num_classes=10))
    time, labels = torch.full((4,), 0.3), torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        for w in (0.0, 1.0, 2.5):
            torch.testing.assert_close(
                cells["guided"](net, x, time, labels, w), samplers.guided(net, x, time, labels, w, null_label=10)
            )
        torch.testing.assert_close(cells["guided"](net, x, time), samplers.guided(net, x, time, None, 1.0, None))


@pytest.mark.parametrize(
    "objective, sampler, steps, guidance",
    [
        ("flow", "euler", 4, 1.0),
        ("flow", "euler", 3, 2.0),
        ("flow", "heun", 4, 1.0),
        ("flow", "heun", 3, 2.0),
        ("eps", "ddim", 4, 1.0),
        ("eps", "ddim", 5, 3.0),
    ],
)
def test_the_notebooks_draw_is_labkits_sample(objective, sampler, steps, guidance):
    """The notebook's whole sampling loop, from the same starting noise, against ``samplers.sample``, and the
    trajectory it keeps for the noise-to-digit strip (the noise, then x after every step)."""
    schedule = NoiseSchedule("cosine", 1000)
    cells = _run_cells(
        SAMPLERS_CELL,
        data=SimpleNamespace(image_shape=(1, 28, 28)),
        cfg=SimpleNamespace(objective=objective, sampler_name=sampler),
        device=torch.device("cpu"),
        schedule=schedule,
        ddim_timesteps=samplers.ddim_timesteps,
        to_unit=to_unit,
    )
    net = _randomised(UNet((1, 28, 28), 8, num_classes=10))
    labels = torch.arange(6) % 10 if guidance != 1.0 else None
    path = []
    ours = cells["draw"](net, 6, steps, labels=labels, guidance=guidance, seed=3, trajectory=path)
    theirs_path = []
    theirs = samplers.sample(
        net,
        (6, 1, 28, 28),
        objective=objective,
        sampler=sampler,
        steps=steps,
        schedule=schedule,
        labels=labels,
        guidance=guidance,
        null_label=10,
        generator=torch.Generator().manual_seed(3),
        trajectory=theirs_path,
    )
    torch.testing.assert_close(ours, to_unit(theirs))
    assert len(path) == len(theirs_path) == steps + 1
    for mine, reference in zip(path, theirs_path):
        torch.testing.assert_close(mine, reference)


# --------------------------------------------------------------------------- the notebook as a whole


def test_notebook_05_explains_every_name_it_carries_across_sections():
    nb = _notebook()
    expected, registered = cross_section_names(nb), registered_sections(nb)
    assert registered == expected, "update the explain_missing_names call of notebook 05's imports cell"


def test_notebook_05_trains_and_samples_with_the_code_it_teaches():
    """The ideas are the notebook's own cells, and the rest of the notebook uses them, not labkit's copies."""
    nb = _notebook()
    trees = _code_trees(nb)
    definitions = {s.name: s for t in trees for s in t.body if hasattr(s, "name") and hasattr(s, "body")}
    uses = {
        "q_sample": "eps_loss",
        "eps_loss": "DenoiserTraining",
        "flow_matching_loss": "DenoiserTraining",
        "ddim_step": "draw",
        "euler_step": "draw",
        "heun_step": "draw",
        "guided": "draw",
    }
    for idea, user in uses.items():
        assert idea in definitions and user in definitions, f"notebook 05 does not define {idea} and {user}"
        assert idea in _loads(definitions[user]), f"notebook 05: {user} does not use the notebook's {idea}"
    calls = _top_level_calls(trees)
    called = {c.func.id for c in calls if hasattr(c.func, "id")}
    assert {"UNet", "draw"} <= called
    keywords = [k for c in calls for k in c.keywords]
    trained_with = {k.value.id for k in keywords if k.arg == "training_class" and hasattr(k.value, "id")}
    assert trained_with == {"DenoiserTraining"}, "notebook 05 trains with a training class other than its own"
    code = "\n".join(_text(c) for c in nb["cells"] if c["cell_type"] == "code")
    for labkit_copy in ("eps_loss", "flow_matching_loss", "ddim_step", "guided", "sample"):
        assert f"samplers.{labkit_copy}(" not in code and f"losses.{labkit_copy}(" not in code
    assert "diffusion.unet.UNet(" not in code.replace("twin = labkit.diffusion.unet.UNet(", "")


def test_notebook_05_has_one_questions_cell_and_exercises_that_are_not_done_yet():
    cells = _notebook()["cells"]
    questions = [c for c in cells if c["cell_type"] == "markdown" and _text(c).startswith("## Questions")]
    assert len(questions) == 1
    checks = [_text(c) for c in cells if c["cell_type"] == "code" and "exercises.check_" in _text(c)]
    assert [c.strip().splitlines()[-1] for c in checks] == [
        "exercises.check_q_sample(my_q_sample)",
        "exercises.check_ddim_step(my_ddim_step)",
        "exercises.check_flow_matching_loss(my_flow_matching_loss)",
    ]
