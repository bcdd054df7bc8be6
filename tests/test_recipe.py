"""The two training scales of the smallcnn family: the recipes, their building blocks, and the
paper scale end to end (with a shortened recipe)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmark.learners.coteaching import CoTeaching
from benchmark.learners.elr import ELR
from benchmark.learners.smallcnn import SmallCNN

torch = pytest.importorskip("torch")

from benchmark.learners import _recipe  # noqa: E402
from benchmark.learners._recipe import (  # noqa: E402
    PAPER,
    Recipe,
    augment,
    cpu_recipe,
    make_network,
    make_optimizer_and_schedule,
    recipe_for,
)
from benchmark.learners._smallcnn_net import CifarResNet, SmallNet, paper_augment  # noqa: E402

FAMILY = (SmallCNN, CoTeaching, ELR)
STATS = ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


@pytest.fixture
def tiny_paper(monkeypatch: pytest.MonkeyPatch) -> Recipe:
    """The paper's recipe, shortened: ResNet-8, 2 epochs of batches of 16, a milestone at 1."""
    tiny = dataclasses.replace(
        PAPER, depth=8, epochs=2, batch_size=16, milestones=(1,), warmup_epochs=1, finetune_epochs=1
    )
    monkeypatch.setattr(_recipe, "PAPER", tiny)
    return tiny


# ----------------------------------------------------------------------------- the recipes


def test_the_paper_recipe_is_the_reference_codes() -> None:
    assert (PAPER.network, PAPER.depth, PAPER.width) == ("resnet", 110, 16)
    assert (PAPER.epochs, PAPER.batch_size, PAPER.lr, PAPER.momentum) == (160, 256, 0.1, 0.9)
    assert (PAPER.schedule, PAPER.milestones, PAPER.gamma) == ("multistep", (80, 120), 0.1)
    assert PAPER.weight_decay == 1e-4 and PAPER.decay_norm_and_bias
    assert (PAPER.augment, PAPER.label_smoothing, PAPER.warmup_epochs) == ("paper", 0.0, 25)
    assert (PAPER.finetune_epochs, PAPER.finetune_lr) == (20, 0.0025)


def test_the_cpu_recipe_is_the_configs_knobs() -> None:
    config = SmallCNN(epochs=7, width=12, lr=0.01, batch_size=8, finetune_epochs=3).config
    recipe = cpu_recipe(config)
    assert (recipe.network, recipe.augment, recipe.schedule) == ("smallnet", "crop_flip", "onecycle")
    assert (recipe.epochs, recipe.width, recipe.lr, recipe.batch_size) == (7, 12, 0.01, 8)
    assert (recipe.label_smoothing, recipe.finetune_epochs, recipe.finetune_lr) == (0.2, 3, 0.0025)
    assert recipe_for(config) == recipe
    assert recipe_for(SmallCNN(scale="paper", epochs=7).config) is PAPER
    assert cpu_recipe(CoTeaching(warmup_epochs=2).config).warmup_epochs == 2


@pytest.mark.parametrize("cls", FAMILY)
def test_scale_and_posteriors_are_checked_when_the_learner_is_named(cls: type[SmallCNN]) -> None:
    with pytest.raises(ValueError, match="scale='gpu'"):
        cls(scale="gpu")
    with pytest.raises(ValueError, match="posteriors='both'"):
        cls(posteriors="both")
    assert cls(scale="paper", posteriors="insample").insample


def test_a_recipe_refuses_what_does_not_fit_together() -> None:
    with pytest.raises(ValueError, match="network"):
        dataclasses.replace(PAPER, network="vgg")
    with pytest.raises(ValueError, match="ResNet"):
        dataclasses.replace(PAPER, network="smallnet")  # the paper augmentation needs [0, 1] images
    with pytest.raises(ValueError, match="schedule"):
        dataclasses.replace(PAPER, schedule="cosine")


# ----------------------------------------------------------------------------- building blocks


def test_resnet110_has_110_layers_in_three_stages_of_18_blocks() -> None:
    torch.manual_seed(0)
    net = make_network(PAPER, 3, 10, STATS)
    assert isinstance(net, CifarResNet)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 110
    assert [c.out_channels for c in convs][1::36] == [16, 32, 64]
    assert 1.6e6 < sum(p.numel() for p in net.parameters()) < 1.8e6
    assert isinstance(make_network(cpu_recipe(SmallCNN().config), 3, 10), SmallNet)
    with pytest.raises(ValueError, match="6n\\+2"):
        make_network(dataclasses.replace(PAPER, depth=12), 3, 10, STATS)


def test_resnet110_trains_a_step_on_a_few_small_images() -> None:
    torch.manual_seed(0)
    net = make_network(PAPER, 3, 10, STATS).to(memory_format=torch.channels_last)
    optimizer, schedule = make_optimizer_and_schedule(PAPER, net, steps_per_epoch=1)
    x = torch.rand(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in net.parameters()]
    loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    schedule.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_the_paper_schedule_divides_the_rate_by_ten_at_each_milestone() -> None:
    net = torch.nn.Linear(2, 2)
    optimizer, schedule = make_optimizer_and_schedule(PAPER, net, steps_per_epoch=3)
    rates = []
    for _ in range(PAPER.epochs * 3):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    np.testing.assert_allclose(rates[0], 0.1)
    np.testing.assert_allclose(rates[80 * 3 - 1], 0.1)
    np.testing.assert_allclose(rates[80 * 3], 0.01)
    np.testing.assert_allclose(rates[120 * 3], 0.001)
    group = optimizer.param_groups[0]
    assert group["nesterov"] and group["momentum"] == 0.9
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 1e-4]


def test_the_cpu_recipe_spares_norms_and_biases_weight_decay_and_finetuning_is_constant() -> None:
    recipe = cpu_recipe(SmallCNN().config)
    net = torch.nn.Linear(2, 2)
    optimizer, _ = make_optimizer_and_schedule(recipe, net, steps_per_epoch=3)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]
    optimizer, schedule = make_optimizer_and_schedule(recipe, net, steps_per_epoch=3, finetune=True)
    for _ in range(10):
        assert optimizer.param_groups[0]["lr"] == recipe.finetune_lr
        optimizer.step()
        schedule.step()


def test_the_paper_augmentation_is_seeded_and_stays_in_the_unit_range() -> None:
    x = torch.rand(8, 3, 16, 16)

    def views(seed: int) -> torch.Tensor:
        return augment(PAPER, x, torch.Generator().manual_seed(seed))

    a = views(0)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(a, views(0), rtol=0, atol=0)
    assert not torch.equal(a, views(1))
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # Each image is changed, but stays close to the original (a mild transform).
    diff = (a - x).abs().mean(dim=(1, 2, 3))
    assert (diff > 1e-3).all()
    greyscale = paper_augment(torch.rand(2, 1, 12, 10), torch.Generator().manual_seed(0))
    assert greyscale.shape == (2, 1, 12, 10)


def test_the_paper_augmentation_moves_a_dot_by_a_few_pixels_at_most() -> None:
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 8, 8] = 1.0  # off centre, so that rotation, shear and crop all move it
    out = paper_augment(x, torch.Generator().manual_seed(0))
    weights = out[:, 0]
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = weights.sum(dim=(1, 2)).clamp_min(1e-6)
    cy = (weights * ys).sum(dim=(1, 2)) / mass
    cx = (weights * xs).sum(dim=(1, 2)) / mass
    # Flipped or not, the dot stays near row 8, near column 8 or 23, and does move.
    col = torch.minimum((cx - 8).abs(), (cx - 23).abs())
    assert ((cy - 8).abs() < 6).all() and (col < 6).all()
    assert (cx > 16).any() and (cx < 16).any()  # some flipped, some not
    assert ((cy - 8).abs() + col > 0.5).float().mean() > 0.5


# ----------------------------------------------------------------------------- paper scale end to end


@pytest.mark.parametrize("cls", FAMILY)
def test_paper_scale_runs_end_to_end_with_a_short_recipe(cls: type[SmallCNN], tiny_paper: Recipe) -> None:
    from test_smallcnn import colour_task

    task = colour_task()
    learner = cls(scale="paper", folds=2, bf16=False)
    post = learner.fit_predict(task, seed=0, progress=False)
    assert post.probs.shape == (task.n_samples, 3) and np.isfinite(post.probs).all()
    np.testing.assert_allclose(post.probs.sum(axis=1), 1.0, atol=1e-5)
    assert post.info is not None
    assert (post.info["scale"], post.info["network"], post.info["epochs"]) == ("paper", "resnet8", 2)
    assert len(learner.history) == tiny_paper.epochs
    again = learner.refit(task, task.noisy_labels, seed=0)
    assert again.info is not None and again.info["finetuned"] == 1
    assert len(learner.history) == tiny_paper.finetune_epochs
