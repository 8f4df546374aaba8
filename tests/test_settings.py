"""Train settings declared once (src.settings): the CLI, the routing of --param, and settings that do not apply."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from src.config import load_config
from src.errors import ConfigError
from src.models import REGISTRY, get_spec
from src.settings import (
    CLASSIFICATION,
    FIELDS,
    REGRESSION,
    TrainConfig,
    add_train_flags,
    check_applicable,
    flag_of,
    flag_values,
    make_train_config,
    parse_pairs,
    route_params,
)
from src.train import check_train_config, resolve_train_config


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    add_train_flags(ap)
    return ap


def test_every_setting_has_one_flag_with_help_and_default():
    ap = _parser()
    actions = {a.dest: a for a in ap._actions if a.dest in FIELDS}
    assert set(actions) == set(FIELDS) - {"model", "model_params"}
    for name, a in actions.items():
        assert a.help and "(default:" in a.help, name
    assert actions["optimizer"].choices == ["sgd", "adam", "adamw", "rmsprop", "adagrad"]
    assert actions["device"].choices == ["auto", "cpu", "cuda"]
    assert "" not in actions["metric"].choices
    assert actions["folds"].nargs == "+" and actions["folds"].type is int
    assert flag_of("overfit_batches") == "--overfit-batch"


def test_flags_parse_to_typed_values_and_bad_choices_exit():
    args = _parser().parse_args(["--folds", "0", "2", "--no-amp", "--lr", "3e-3", "--task-weights", "1", "2"])
    assert flag_values(args) == {"folds": [0, 2], "amp": False, "lr": 3e-3, "task_weights": [1.0, 2.0]}
    with pytest.raises(SystemExit):
        _parser().parse_args(["--optimizer", "adamm"])


def test_values_are_strictly_typed():
    with pytest.raises(ConfigError, match=r"epochs = 2.5: Input should be a valid integer"):
        make_train_config({"model": "mlp", "epochs": 2.5}, "test")
    with pytest.raises(ConfigError, match=r"unknown setting 'lrr'"):
        make_train_config({"model": "mlp", "lrr": 1e-3}, "test")
    assert make_train_config({"model": "mlp", "lr": 1}, "test").lr == 1.0  # an int is a valid float


def test_one_routing_rule_for_param():
    """A key that names a setting goes to the trainer, anything else to the model (the same rule for train, tune, push)."""
    train, model = route_params(parse_pairs(["layer_decay=0.7", "hidden=[64,32]", "lr=1e-3", "pretrained=package"]))
    assert train == {"layer_decay": 0.7, "lr": 1e-3}
    assert model == {"hidden": [64, 32], "pretrained": "package"}
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_pairs(["hidden"])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_params_are_checked_against_the_builder(name):
    spec = get_spec(name)
    spec.check_params(dict(spec.defaults))  # the entry's own defaults are accepted
    with pytest.raises(ConfigError, match=r"--param hiden: model .* has no such parameter"):
        spec.check_params({"hiden": [64]})


def test_transfer_capability_only_on_backbones():
    assert "pretrained backbones" in get_spec("resnet18").capabilities
    assert "pretrained backbones" not in get_spec("cnn").capabilities
    assert get_spec("mlp").capabilities == {"gradient-trained models"}
    assert "in_chans" in get_spec("resnet18").accepted_params()
    assert "in_chans" not in get_spec("cnn").accepted_params()  # a 3-channel cnn would be fed 1 channel


NOT_APPLICABLE = [
    ("mlp", "freq_mask", 8), ("mlp", "time_mask", 8), ("mlp", "crop_frames", 64), ("mlp", "tta", 3), ("mlp", "rotate", 5.0),
    ("mlp", "cutmix_alpha", 1.0), ("cnn", "layer_decay", 0.7), ("cnn", "freeze_epochs", 2), ("cnn", "freeze_bn", True),
    ("mlp", "unfreeze_every", 1), ("mlp", "loss", "l1"), ("mlp", "task_weights", [1.0, 2.0]),
]


@pytest.mark.parametrize("model, name, value", NOT_APPLICABLE, ids=[f"{m}-{n}" for m, n, _ in NOT_APPLICABLE])
def test_a_setting_that_does_not_apply_is_an_error(model, name, value):
    spec = get_spec(model)
    tc = TrainConfig(model=model, **{name: value})
    with pytest.raises(ConfigError, match=rf"{flag_of(name)} .*applies to .* only"):
        check_applicable(tc, spec.capabilities | {CLASSIFICATION}, spec.describe(), {name: "the command line"})


def test_settings_that_apply_pass():
    check_applicable(TrainConfig(model="resnet18", freq_mask=8, layer_decay=0.7, mixup_alpha=0.2),
                     get_spec("resnet18").capabilities | {CLASSIFICATION}, "resnet18", {})
    check_applicable(TrainConfig(model="mlp", loss="l1"), get_spec("mlp").capabilities | {REGRESSION}, "mlp", {})


def test_config_train_defaults_that_do_not_apply_are_dropped_and_said(tabular, caplog):
    """[train] holds competition-wide defaults: one that does nothing for the chosen model (freq_mask for mlp) is not
    applied, and the run says so (log + config.json); the same value given for this run is an error (see above)."""
    import tomllib

    from fixtures import write_toml

    raw = tomllib.loads(tabular.config.read_text())
    raw["train"] = {"freq_mask": 8, "epochs": 5}
    write_toml(tabular.config, raw)
    cfg = load_config(tabular.config)
    tc, sources = resolve_train_config(cfg, "mlp")
    dropped = check_train_config(cfg, tc, sources)
    assert tc.freq_mask == 0 and tc.epochs == 5
    assert dropped == [f"--freq-mask 8 (from [train] of {tabular.config.name}) applies to spectrogram models only"]
    assert "not used: --freq-mask 8" in caplog.text
    tc, sources = resolve_train_config(cfg, "mlp", flags={"freq_mask": 8})
    with pytest.raises(ConfigError, match=r"--freq-mask 8 \(from the command line\)"):
        check_train_config(cfg, tc, sources)


def test_precedence_config_tuned_param_flags(tabular):
    cfg = load_config(tabular.config)
    cfg.train = {"lr": 0.5, "epochs": 3, "model_params": {"hidden": [8]}}
    tc, sources = resolve_train_config(cfg, "mlp", flags={"epochs": 7}, params={"lr": 0.25, "dropout": 0.1})
    assert (tc.lr, tc.epochs, tc.model_params) == (0.25, 7, {"hidden": [8], "dropout": 0.1})
    assert sources["lr"] == "--param" and sources["epochs"] == "the command line"
    assert dataclasses.asdict(tc)["model"] == "mlp"
