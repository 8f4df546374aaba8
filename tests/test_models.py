"""Model registry (timm style: every entry forward + backward, no NaNs), augmentation and training-engine behaviour."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.augment import crop_time, mix_batch, spec_augment, tta_views
from src.errors import ConfigError
from src.inference import aggregate
from src.models import REGISTRY, TIMM_NAMES, create_model, get_spec
from src.optim import make_optimizer, make_scheduler
from src.settings import TrainConfig

SPEC_SHAPE = (64, 64)  # (n_mels, T): small, but inception's 75-px minimum is handled by resizing


def _cases():
    for name, spec in sorted(REGISTRY.items()):
        if spec.input == "vector":
            yield pytest.param(name, {}, id=name)
        elif name in TIMM_NAMES or spec.description.startswith("timm"):
            for chans in (1, 3):
                yield pytest.param(name, {"in_chans": chans}, id=f"{name}-{chans}ch")
        else:
            yield pytest.param(name, {}, id=name)


@pytest.mark.parametrize("name,params", list(_cases()))
def test_every_registry_entry_trains_one_step(name: str, params: dict) -> None:
    torch.manual_seed(0)
    spec = get_spec(name)
    if spec.kind == "sklearn":  # scikit-learn heads: fit and predict on vectors (end to end in tests/test_heads.py)
        X, y = np.random.default_rng(0).normal(size=(24, 5)), np.arange(24) % 3
        est = spec.builder(task=spec.tasks[0], **spec.defaults).fit(X, y if "classification" in spec.tasks else X[:, 0])
        assert len(est.predict(X)) == 24
        return
    if spec.recipe == "musicnn":  # its own 96-band recipe; random init here (the weights: tests/test_musicnn.py)
        model = create_model(name, num_classes=4, in_chans=1, input_shape=(96, 187), **{**params, "pretrained": False})
        x = torch.randn(2, 1, 96, 187)
    elif spec.input == "vector":
        model = create_model(name, num_classes=4, in_features=26, **params)
        x = torch.randn(3, 26)
    else:
        params = dict(params)
        model = create_model(name, num_classes=4, in_chans=params.pop("in_chans", 1), input_shape=SPEC_SHAPE, **params)
        x = torch.randn(2, 1, *SPEC_SHAPE)  # the data is always a 1-channel spectrogram
    model.train()
    out = model(x)
    assert out.shape == (len(x), 4)
    loss = torch.nn.functional.cross_entropy(out, torch.arange(len(x)) % 4)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(out).all() and torch.isfinite(loss)
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the parameters"
    assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ConfigError, match="unknown model .*registered model .*cnn_seed"):
        get_spec("no_such_net")


def test_any_timm_name_resolves() -> None:
    spec = get_spec("mobilenetv3_small_050")  # not registered by hand: timm.is_model finds it
    assert spec.input == "spec"
    out = create_model("mobilenetv3_small_050", num_classes=3, in_chans=1, input_shape=(32, 32))(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 3)


def test_seed_mlp_is_the_assignment_network() -> None:
    m = create_model("mlp_seed", num_classes=4, in_features=26)
    shapes = [tuple(p.shape) for p in m.parameters() if p.ndim == 2]
    assert shapes == [(128, 26), (32, 128), (4, 32)]


def test_seed_cnn_layout_and_no_pool_switch() -> None:
    m = create_model("cnn_seed", num_classes=4, in_chans=1, input_shape=(21, 128))
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 16, (5, 5), (2, 2)), (16, 32, (5, 5), (2, 2)), (32, 64, (5, 5), (2, 2)), (64, 128, (5, 5), (2, 2))]
    fcs = [mod.out_features for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert fcs == [1024, 256, 32, 4]
    flat = create_model("cnn_seed", num_classes=4, in_chans=1, input_shape=(21, 128), pool=False)
    first_fc = next(mod for mod in flat.modules() if isinstance(mod, torch.nn.Linear))
    assert first_fc.in_features == 128 * 21 * 128  # padding 2 keeps the size without pooling
    assert flat(torch.randn(2, 1, 21, 128)).shape == (2, 4)


def test_spec_augment_masks_per_sample_and_only_in_training() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 32, 40)
    y = spec_augment(x, TrainConfig(model="cnn", freq_mask=8, time_mask=10, n_masks=1))
    masked = (y == 0)
    assert masked.any()
    assert len({int(m.sum()) for m in masked}) > 1, "masks should differ between samples (iid_masks)"
    assert torch.equal(y[~masked], x[~masked])  # everything else untouched


def test_mixup_gives_soft_targets_that_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    x, y = torch.randn(6, 8, 10), torch.tensor([0, 1, 2, 3, 0, 1])
    for cfg in (TrainConfig(model="cnn", mixup_alpha=0.4), TrainConfig(model="cnn", cutmix_alpha=1.0)):
        changed = 0
        for _ in range(5):  # a single draw may take (almost) nothing from the partner
            xm, ys = mix_batch(x, y, cfg, rng, 4)
            assert xm.shape == x.shape and ys.shape == (6, 4)
            assert torch.allclose(ys.sum(1), torch.ones(6))
            assert (ys.max(1).values < 1).any() == (not torch.equal(xm, x))  # soft targets iff inputs mixed
            changed += not torch.equal(xm, x)
        assert changed >= 3


def test_crop_and_tta_views() -> None:
    X = np.arange(2 * 3 * 10, dtype=np.float32).reshape(2, 3, 10)
    assert crop_time(X, 4, None).shape == (2, 3, 4)
    np.testing.assert_array_equal(crop_time(X, 4, None), X[..., 3:7])  # centre crop at evaluation
    r = crop_time(X, 4, np.random.default_rng(1))
    assert r.shape == (2, 3, 4)
    views = tta_views(X, 3, 4)
    assert [v.shape[-1] for v in views] == [4, 4, 4] and views[0][0, 0, 0] == 0 and views[-1][0, 0, -1] == 9


def test_aggregate_modes() -> None:
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    rows = np.array([0, 0, 1])
    fill = np.array([0.5, 0.5], dtype=np.float32)
    np.testing.assert_allclose(aggregate(p, rows, 3, fill, "mean"), [[0.55, 0.45], [0.6, 0.4], [0.5, 0.5]], atol=1e-6)
    mx = aggregate(p, rows, 3, fill, "max")
    np.testing.assert_allclose(mx[0], np.array([0.9, 0.8]) / 1.7, atol=1e-6)
    gm = aggregate(p, rows, 3, fill, "logmean")
    np.testing.assert_allclose(gm.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("sched", ["cosine", "onecycle", "step"])
def test_schedulers_keep_group_lr_ratios(sched: str) -> None:
    w1, w2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    tc = TrainConfig(model="mlp", lr=1e-2, scheduler=sched, epochs=4, warmup_epochs=1, step_size=1)
    opt = make_optimizer([{"params": [w1], "lr": 1e-3}, {"params": [w2], "lr": 1e-2}], tc)
    sch, per_step = make_scheduler(opt, tc, steps_per_epoch=5)
    for _ in range(7):
        opt.step()
        sch.step()
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs[1] == pytest.approx(10 * lrs[0], rel=1e-6)
    assert per_step == (sched != "step")
