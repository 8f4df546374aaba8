"""Multi-label training: losses, sigmoid outputs, aggregation, mixup targets, class-balanced sampling, the attention head."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures import make_multilabel_competition
from train_helpers import _train, _write_folds

from src.augment import mix_batch
from src.config import load_config
from src.errors import ConfigError
from src.features import prepare
from src.inference import aggregate
from src.models import AttentionPool, create_model
from src.optim import MultilabelLoss
from src.settings import TrainConfig
from src.train import balanced_weights, check_train_config, clip_aggregation


@pytest.fixture(scope="module")
def freesound(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    comp = make_multilabel_competition(root, style="freesound")
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    _write_folds(prep, root)
    return cfg, prep, root


def test_focal_and_bce_losses_match_their_definitions():
    out, y = torch.tensor([[2.0, -1.0], [0.5, 0.0]]), torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    p = torch.sigmoid(out)
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert torch.isclose(MultilabelLoss("bce")(out, y), bce)
    p_t = p * y + (1 - p) * (1 - y)  # RetinaNet: alpha 0.25 for positives, 0.75 for negatives
    alpha_t = 0.25 * y + 0.75 * (1 - y)
    ce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    assert torch.isclose(MultilabelLoss("focal", gamma=2.0)(out, y), (alpha_t * ce * (1 - p_t) ** 2).mean())


def test_multilabel_max_aggregation_is_not_renormalised():
    items = np.array([[0.9, 0.1, 0.8], [0.2, 0.7, 0.6], [0.3, 0.3, 0.3]], np.float32)
    rows = np.array([0, 0, 1])
    how = clip_aggregation(TrainConfig(model="cnn", aggregate="max"), "multilabel")
    assert how == ("max", False)
    out = aggregate(items, rows, 3, np.full(3, 0.5, np.float32), *how)
    np.testing.assert_allclose(out, [[0.9, 0.7, 0.8], [0.3, 0.3, 0.3], [0.5, 0.5, 0.5]])  # row 2 has no items: the prior
    single = aggregate(items, rows, 2, np.zeros(3), *clip_aggregation(TrainConfig(model="cnn", aggregate="max"), "classification"))
    np.testing.assert_allclose(single.sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("labels, expected", [("mix", None), ("max", [[1, 1, 0], [1, 1, 0]])])
def test_mixup_targets_mix_or_union(labels, expected):
    tc = TrainConfig(model="cnn", mixup_alpha=0.4, mixup_labels=labels)
    x, y = torch.randn(2, 4, 8), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    rng = np.random.default_rng(3)  # with this seed the partner permutation is [1, 0]: each row mixes with the other
    _, soft = mix_batch(x, y, tc, rng, 3)
    if expected is not None:
        np.testing.assert_array_equal(soft.numpy(), expected)
    else:
        assert torch.allclose(soft.sum(1), torch.ones(2)) and soft.max() < 1.0


def test_balanced_weights_follow_the_rarest_positive_class():
    y = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(balanced_weights(y, 2, "classification"), [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    Y = np.array([[1, 0], [1, 0], [1, 1], [1, 0]], np.float32)  # class 1 has one positive: row 2 weighs 1/1, others 1/4
    w = balanced_weights(Y, 2, "multilabel")
    np.testing.assert_allclose(w, np.array([0.25, 0.25, 1.0, 0.25]) / 1.75)


def test_attention_pool_weights_time_per_class():
    pool = AttentionPool(4, 3)
    x = torch.randn(2, 4, 7)  # (B, C', T')
    out = pool(x)
    assert out.shape == (2, 3)
    net = create_model("cnn", 3, in_chans=1, input_shape=(32, 16), channels=[4, 8], time_pool="attention")
    assert net(torch.randn(2, 1, 32, 16)).shape == (2, 3)
    with pytest.raises(ConfigError, match="time_pool"):
        create_model("cnn", 3, in_chans=1, channels=[4], time_pool="sum")


def test_multilabel_settings_are_refused_elsewhere(freesound):
    cfg, _, _ = freesound
    with pytest.raises(ConfigError, match="is for classification"):
        check_train_config(cfg, TrainConfig(model="logreg"), {})
    single = load_config(cfg.path)
    single.competition.task = "classification"
    with pytest.raises(ConfigError, match="focal"):
        check_train_config(single, TrainConfig(model="cnn", focal_gamma=1.0), {})


def test_multilabel_run_with_every_option(freesound):
    """focal loss, label smoothing, union mixup, balanced sampling, attention head and max aggregation in one run:
    sigmoid probabilities out (rows need not sum to 1), multilabel metrics in metrics.json, OOF-tuned thresholds."""
    cfg, prep, root = freesound
    run = _train(cfg, prep, root, "cnn", "ml-all", epochs=2, params={"channels": [4, 8], "time_pool": "attention"},
                 multilabel_loss="focal", label_smoothing=0.1, mixup_alpha=0.4, mixup_labels="max", balanced_sampling=True,
                 aggregate="max")
    oof, test = np.load(run / "oof.npy"), np.load(run / "test.npy")
    assert oof.shape == (24, 4) and test.shape == (4, 4)
    assert ((oof > 0) & (oof < 1)).all() and not np.allclose(oof.sum(1), 1.0)
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["oof"]) >= {"roc_auc", "cmap", "lwlrap", "micro_f1", "macro_f1"}
    assert m["metric"] == "roc_auc" and 0 <= m["oof_thresholds"]["micro_f1"]["threshold"] <= 1
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "multilabel" and config["classes"] == ["chirp", "high", "low", "pulse"]
