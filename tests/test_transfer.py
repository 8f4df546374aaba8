"""Layer groups, discriminative learning rates and freezing (src/transfer.py) on real timm models."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from src.transfer import Freezer, group_lrs, group_scales, layer_groups, param_groups

pytestmark = pytest.mark.usefixtures("two_torch_threads")

MODELS = ["vgg16", "resnet18", "efficientnet_b0"]
BASE_LR, DECAY = 1e-2, 0.5


_CACHE: dict[str, nn.Module] = {}


def _model(name: str) -> nn.Module:
    """One small-input, 4-class, 1-channel model per architecture (vgg16 alone takes seconds to build).

    Tests do not need pristine weights, only a clean state: all parameters trainable, no
    gradients, no Freezer hooks left over from an earlier test.
    """
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = timm.create_model(name, pretrained=False, num_classes=4, in_chans=1)
    m = _CACHE[name]
    for p in m.parameters():
        p.requires_grad_(True)
        p.grad = None
    for mod in m.modules():
        mod._forward_pre_hooks.clear()
    return m.train()


def _schedulers():
    """(name, factory(optimizer, n_steps)) — torch schedulers and timm's cosine scheduler."""
    from timm.scheduler import CosineLRScheduler

    return {
        "cosine": lambda opt, n: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n),
        "warmup_lambda": lambda opt, n: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3) * 0.9 ** s),
        "onecycle": lambda opt, n: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=group_lrs(opt), total_steps=n),
        # timm's warmup_lr_init and lr_min are absolute rates shared by all groups: leave them at 0
        "timm_cosine": lambda opt, n: _TimmStep(CosineLRScheduler(opt, t_initial=n)),
    }


class _TimmStep:
    """timm schedulers take the step number explicitly."""

    def __init__(self, sched):
        self.sched, self.t = sched, 0

    def step(self):
        self.t += 1
        self.sched.step(self.t)


def _lr_trace(opt, sched, n_steps: int) -> list[list[float]]:
    trace = []
    for _ in range(n_steps):
        trace.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return trace


@pytest.mark.parametrize("name", MODELS)
def test_layer_groups_run_from_stem_to_classifier(name):
    model = _model(name)
    groups = layer_groups(model)
    first_conv = model.pretrained_cfg["first_conv"] + ".weight"
    assert groups[0][0][0] == first_conv
    assert [id(p) for _, p in groups[-1]] == [id(p) for p in model.get_classifier().parameters()]
    flat = [id(p) for g in groups for _, p in g]
    assert len(flat) == len(set(flat)) == len(list(model.parameters()))
    assert len(groups) >= 6
    if name == "vgg16":  # pre_logits (fc6/fc7) is body, not head: freezing the body freezes them too
        assert groups[-2][0][0].startswith("pre_logits")


@pytest.mark.parametrize("sched_name", ["cosine", "warmup_lambda", "onecycle", "timm_cosine"])
@pytest.mark.parametrize("name", MODELS)
def test_group_lrs_keep_layer_decay_ratios_through_the_schedule(name, sched_name):
    model = _model(name)
    pg = param_groups(model, BASE_LR, layer_decay=DECAY, weight_decay=0.05)
    n = len(layer_groups(model))
    opt = torch.optim.SGD(pg, lr=123.0)  # the optimizer default must not leak into any group
    make = _schedulers()[sched_name]
    trace = _lr_trace(opt, make(opt, 8), 8)
    # the same schedule on a single group at base_lr gives the factor of every step
    ref_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    ref = [lrs[0] for lrs in _lr_trace(ref_opt, make(ref_opt, 8), 8)]
    assert len(set(np.round(ref, 12))) > 3  # the schedule really moves the rate
    for step in (0, 1, 3, 5, 7):
        for g, lr in zip(opt.param_groups, trace[step]):
            want = ref[step] * DECAY ** (n - 1 - g["layer_group"])
            assert lr == pytest.approx(want, rel=1e-9), (step, g["group_name"])
    head = [lr for g, lr in zip(opt.param_groups, trace[5]) if g["layer_group"] == n - 1]
    stem = [lr for g, lr in zip(opt.param_groups, trace[5]) if g["layer_group"] == 0]
    assert stem[0] / head[0] == pytest.approx(DECAY ** (n - 1))


def test_the_pitfalls_this_module_avoids():
    """timm's layer_decay (lr_scale) is ignored by torch schedulers; OneCycleLR with a scalar max_lr drops the ratios."""
    from timm.optim import create_optimizer_v2

    model = _model("resnet18")
    timm_opt = create_optimizer_v2(model, "sgd", lr=BASE_LR, layer_decay=DECAY)
    assert len({g["lr_scale"] for g in timm_opt.param_groups}) > 3
    sched = torch.optim.lr_scheduler.LambdaLR(timm_opt, lambda s: 1.0)
    timm_opt.step()
    sched.step()
    assert len({g["lr"] for g in timm_opt.param_groups}) == 1  # every layer at the same rate
    opt = torch.optim.SGD(param_groups(model, BASE_LR, layer_decay=DECAY), lr=BASE_LR)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=BASE_LR, total_steps=5)
    assert len({g["lr"] for g in opt.param_groups}) == 1
    opt = torch.optim.SGD(param_groups(model, BASE_LR, layer_decay=DECAY), lr=BASE_LR)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=group_lrs(opt), total_steps=5)
    assert len({g["lr"] for g in opt.param_groups}) == len(layer_groups(model))
    assert not any("lr_scale" in g for g in opt.param_groups)  # timm schedulers would apply it a second time


def test_multipliers_and_weight_decay_split():
    model = _model("resnet18")
    n = len(layer_groups(model))
    assert group_scales(4, 0.5, {-1: 10.0}) == [0.125, 0.25, 0.5, 10.0]
    assert group_scales(3, None, [0.1, 0.5, 1.0]) == [0.1, 0.5, 1.0]
    with pytest.raises(ValueError, match="multipliers has 2 entries but the model has 3 layer groups"):
        group_scales(3, None, [1.0, 2.0])
    pg = param_groups(model, 1e-3, multipliers={0: 0.0, -1: 5.0}, weight_decay=0.1)
    lr = {(g["layer_group"], g["weight_decay"]): g["lr"] for g in pg}
    assert lr[(0, 0.1)] == 0.0 and lr[(n - 1, 0.1)] == pytest.approx(5e-3) and lr[(1, 0.0)] == 1e-3
    names = {id(p): nm for nm, p in model.named_parameters()}
    for g in pg:
        for p in g["params"]:
            is_plain = p.ndim <= 1 or names[id(p)].endswith(".bias")
            assert (g["weight_decay"] == 0.0) == is_plain, names[id(p)]


def _step(model, opt, x, y):
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _bn_stats(model, frozen_prefixes):
    return {n: b.clone() for n, b in model.named_buffers() if n.endswith("running_mean") and n.startswith(frozen_prefixes)}


@pytest.mark.parametrize("name", MODELS)
def test_frozen_groups_and_their_batchnorm_do_not_move(name):
    model = _model(name)
    torch.manual_seed(1)
    side = 32 if name == "vgg16" else 16  # vgg16 pools 5 times; the others pad
    x, y = torch.randn(2, 1, side, side), torch.tensor([0, 3])
    opt = torch.optim.AdamW(param_groups(model, 1e-2, layer_decay=0.8, weight_decay=0.1), lr=1e-2)
    freezer = Freezer(model, freeze_epochs=1, unfreeze_every=0, freeze_bn=True)
    groups = layer_groups(model)
    assert freezer.apply(1) == 1
    model.train()  # what train_one_epoch does after the freezer: the hook keeps frozen BN in eval mode
    body = {n: p.detach().clone() for g in groups[:-1] for n, p in g}
    head = {n: p.detach().clone() for n, p in groups[-1]}
    stats = _bn_stats(model, ("",))
    _step(model, opt, x, y)
    named = dict(model.named_parameters())
    assert all(torch.equal(named[n], v) for n, v in body.items())  # no gradient, no weight decay
    assert all(not torch.equal(named[n], v) for n, v in head.items())
    buffers = dict(model.named_buffers())
    assert all(torch.equal(buffers[n], v) for n, v in stats.items())
    if name == "vgg16":
        return  # one step of the 138M-parameter model is enough
    assert freezer.apply(2) == len(groups)
    model.train()
    _step(model, opt, x, y)
    stem = groups[0][0][0]
    assert not torch.equal(named[stem], body[stem])
    buffers = dict(model.named_buffers())
    assert any(not torch.equal(buffers[n], v) for n, v in stats.items())


def test_freeze_bn_modes_and_wrapped_models():
    from src.inference import Wrapped

    model = _model("resnet18")
    wrapped = Wrapped(model, np.zeros((16, 1), np.float32), np.ones((16, 1), np.float32), spec_input=True)
    assert [[n for n, _ in g] for g in layer_groups(wrapped)] == [[n for n, _ in g] for g in layer_groups(model)]
    x = torch.randn(2, 16, 16)
    for mode, moves in (("none", True), ("all", False)):
        freezer = Freezer(wrapped, freeze_epochs=-1, freeze_bn=mode)
        freezer.apply(5)
        wrapped.train()
        before = model.layer4[1].bn2.running_mean.clone()
        with torch.no_grad():
            wrapped(x)
        assert (not torch.equal(before, model.layer4[1].bn2.running_mean)) == moves, mode
        freezer.remove()
    assert model.layer1[0].bn1.training  # the hooks are gone: model.train() rules again


def test_progressive_unfreezing_goes_from_the_head_down():
    model = _model("efficientnet_b0")
    n = len(layer_groups(model))
    freezer = Freezer(model, freeze_epochs=2, unfreeze_every=2)
    expected = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 4}
    for epoch, k in expected.items():
        assert freezer.apply(epoch) == k
        trainable = [all(p.requires_grad for _, p in g) for g in freezer.groups]
        assert trainable == [False] * (n - k) + [True] * k, epoch
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, 16, 16))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.training == m.weight.requires_grad for m in bns)  # frozen BN in eval, trainable BN in train mode
    assert 0 < sum(m.training for m in bns) < len(bns)
    assert freezer.apply(10 ** 6) == n
    assert all(m.training for m in bns)  # released BN layers follow the model's mode again
    assert Freezer(model, freeze_epochs=-1).apply(10 ** 6) == 1  # linear probing: the body never trains
    with pytest.raises(ValueError, match="freeze_bn must be"):
        Freezer(model, freeze_bn="sometimes")


def test_models_without_group_matcher_are_grouped_by_top_level_module():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 3))
    groups = layer_groups(net)
    assert [[n for n, _ in g] for g in groups] == [["0.weight", "0.bias"], ["1.weight", "1.bias"],
                                                   ["3.weight", "3.bias"], ["6.weight", "6.bias"]]
    lrs = {g["group_name"]: g["lr"] for g in param_groups(net, 1.0, layer_decay=0.1)}
    assert lrs == pytest.approx({"0": 1e-3, "1": 1e-2, "3": 1e-1, "6": 1.0})
    freezer = Freezer(net, freeze_epochs=1)
    freezer.apply(1)
    net.train()
    net(torch.randn(2, 1, 6, 6))
    assert not net[1].training and not net[0].weight.requires_grad and net[6].weight.requires_grad
