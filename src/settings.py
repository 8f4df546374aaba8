"""Train settings: one declaration per setting, from which everything else is derived.

Each :class:`TrainConfig` field is declared once, with its type (a ``Literal`` gives the choices),
default, help text and the models it applies to. From that single declaration come:

* the flags of ``src.train`` and ``src.tune`` (:func:`add_train_flags`), with help, defaults and choices;
* the validation of the config's ``[train]`` section, of ``--param`` values, tuning parameters and
  ``src.kaggle push`` arguments (pydantic, strict types, unknown keys refused);
* the routing rule (:func:`route_params`): a key that names a setting goes to the trainer, any other
  key is a model parameter and must be accepted by the model's builder (checked in ``src.models``);
* the applicability check (:func:`check_applicable`): a setting that does nothing for the chosen
  model (SpecAugment on an MLP, layer decay on a from-scratch CNN) is an error, never ignored.

Precedence: defaults < config ``[train]`` < tuned ``--params`` < ``--param``/flags.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import typing
from dataclasses import field
from typing import Any, Callable, Literal

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from .errors import ConfigError

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "spearman", "rmse", "roc_auc", "cmap", "lwlrap", "micro_f1")
# applies-to tags: which models a setting does something for (see src.models.ModelSpec)
SPEC, TRANSFER, CLASSIFICATION, REGRESSION = "spectrogram models", "pretrained backbones", "classification", "regression"
MULTILABEL = "multilabel"  # a multi-label task has CLASSIFICATION's capabilities too (classes, mixup, smoothing)
NEURAL = "gradient-trained models"  # not the scikit-learn heads (logreg, svm, ridge)


def setting(default: Any, help: str, *applies: str, flag: str = "") -> Any:
    """A field with its help text, the models/tasks it applies to (none: all) and an optional flag name."""
    meta = {"help": help, "applies": applies, "flag": flag}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(config=ConfigDict(extra="forbid", strict=True))
class TrainConfig:
    """How one model is trained on every fold (see the module docstring for where each value comes from)."""

    model: str = setting("", "registered model name or any timm model name (see README: Models)")
    epochs: int = setting(30, "maximum epochs per fold", NEURAL)
    batch_size: int = setting(32, "training batch size (prediction uses it for spectrogram nets)", NEURAL)
    lr: float = setting(1e-3, "learning rate (of the head, with --layer-decay)", NEURAL)
    weight_decay: float = setting(1e-4, "weight decay", NEURAL)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop", "adagrad"] = setting("adamw", "optimizer", NEURAL)
    momentum: float = setting(0.9, "SGD momentum (Nesterov)", NEURAL)
    scheduler: Literal["none", "step", "cosine", "onecycle", "plateau"] = setting("none", "learning-rate schedule", NEURAL)
    warmup_epochs: int = setting(0, "linear warm-up epochs of the cosine schedule", NEURAL)
    step_size: int = setting(10, "step schedule: epochs per decay", NEURAL)
    gamma: float = setting(0.5, "step / plateau decay factor", NEURAL)
    grad_clip: float = setting(0.0, "maximum gradient norm (0: off)", NEURAL)
    patience: int = setting(8, "early stopping: epochs without improvement of the metric", NEURAL)
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy (multilabel: targets y(1-e) + e/2)", CLASSIFICATION, NEURAL)
    multilabel_loss: Literal["bce", "focal"] = setting("bce", "multilabel loss: BCE-with-logits, or sigmoid focal loss "
                                                       "(torchvision's, alpha 0.25)", MULTILABEL, NEURAL)
    focal_gamma: float = setting(2.0, "focal loss focusing parameter gamma", MULTILABEL, NEURAL)
    mixup_labels: Literal["mix", "max"] = setting("mix", "mixup/cutmix targets: lam-weighted mix, or the element-wise max "
                                                  "(union) of the two label vectors", MULTILABEL, NEURAL)
    balanced_sampling: bool = setting(False, "class-balanced sampling: each epoch draws training rows with probability "
                                             "1/count of their (rarest positive) class", CLASSIFICATION, NEURAL)
    seed: int = setting(42, "the one seed of the run (fold k uses seed + k)")
    folds: list[int] | None = setting(None, "folds to train (default: every fold of the fold file)")
    repeat: int = setting(0, "repeated k-fold: which fold column (0: fold, 1: fold_r1, ...)")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "where to train")
    amp: bool = setting(True, "mixed precision on CUDA (bf16 where supported, else fp16 + grad scaling)", NEURAL)
    channels_last: bool = setting(True, "channels-last memory format on CUDA", NEURAL)
    metric: Literal["", "accuracy", "balanced_accuracy", "macro_f1", "spearman", "rmse", "roc_auc", "cmap", "lwlrap", "micro_f1"] = setting(
        "", "model-selection metric ('': the competition metric)")
    model_params: dict[str, Any] = setting({}, "model constructor parameters (--param KEY=VALUE)")
    recipe: Literal["", "logmel", "chroma", "logmel_beat", "chroma_beat", "logmel+chroma"] = setting(
        "", "spectrogram recipe the net is fed ('': the model's own; chroma: 12-bin chromagram; *_beat: beat-synchronised "
            "frames; logmel+chroma: both stacked); a model with its own fixed recipe (musicnn) refuses another", SPEC)
    freq_mask: int = setting(0, "SpecAugment: max width of each frequency mask in bins (0: off)", SPEC)
    time_mask: int = setting(0, "SpecAugment: max width of each time mask in frames (0: off)", SPEC)
    n_masks: int = setting(2, "SpecAugment: masks of each kind per sample", SPEC)
    rotate: float = setting(0.0, "max rotation in degrees (albumentations Affine)", SPEC)
    shift: float = setting(0.0, "max translation as a fraction of the size", SPEC)
    scale: float = setting(0.0, "max zoom as a fraction (0.1: 0.9-1.1)", SPEC)
    aug_p: float = setting(0.5, "probability of the affine transform per sample", SPEC)
    crop_frames: int = setting(0, "random time crop in training, centre crop at evaluation (0: off)", SPEC)
    mixup_alpha: float = setting(0.0, "mixup Beta(alpha, alpha) (0: off)", CLASSIFICATION, NEURAL)
    cutmix_alpha: float = setting(0.0, "cutmix along time (0: off)", SPEC, CLASSIFICATION)
    tta: int = setting(0, "test-time augmentation: time crops/shifts averaged (0/1: off)", SPEC)
    noise_p: float = setting(0.0, "waveform augmentation: probability of mixing background noise into a training segment "
                                  "(0: off; any waveform setting on: training log-mel recomputed from cached audio)", SPEC, NEURAL)
    noise_dir: str = setting("", "background-noise audio folder for --noise-p ('': another training segment of the batch)", SPEC, NEURAL)
    noise_snr: list[float] = setting([3.0, 30.0], "noise mixing: signal-to-noise ratio drawn uniformly in [min, max] dB", SPEC, NEURAL)
    gain_db: float = setting(0.0, "waveform augmentation: random gain, uniform in +-gain_db dB (0: off)", SPEC, NEURAL)
    time_shift: float = setting(0.0, "waveform augmentation: max circular time shift, a fraction of the segment (0: off)", SPEC, NEURAL)
    pitch_shift: float = setting(0.0, "waveform augmentation: max pitch shift in semitones, uniform +- (0: off)", SPEC, NEURAL)
    freeze_epochs: int = setting(0, "backbone frozen for the first N epochs (-1: for good)", TRANSFER)
    unfreeze_every: int = setting(0, "progressive unfreezing: one more layer group every N epochs", TRANSFER)
    freeze_bn: bool = setting(False, "frozen groups keep their BatchNorm statistics", TRANSFER)
    layer_decay: float = setting(1.0, "discriminative LR: group i of n gets lr * decay^(n-1-i)", TRANSFER)
    init_checkpoint: str = setting("", "fine-tune from one of our own runs/<id>/fold<k>.pt", NEURAL)
    loss: Literal["mse", "l1"] = setting("mse", "regression loss", REGRESSION, NEURAL)
    task_weights: list[float] | None = setting(None, "per-target loss weights (regression with several targets)", REGRESSION, NEURAL)
    aggregate: Literal["mean", "max", "logmean"] = setting("mean", "segment -> clip aggregation of probabilities (multilabel: "
                                                           "max is the per-class maximum, not renormalised)", CLASSIFICATION)
    loader_workers: int = setting(-1, "background processes preparing training batches from the memory-mapped cache "
                                      "(-1: auto — none on CPU, up to 8 with CUDA; results do not depend on it)", NEURAL)
    overfit_batches: int = setting(0, "train and validate on N fixed batches: can the net fit at all?", NEURAL, flag="--overfit-batch")
    plots: bool = setting(True, "write curves.png / confusion.png")
    run_id: str = setting("", "run folder name under runs/ (default: <name>-<model>-<time>); reuse it to resume")
    fold_file: str = setting("", "fold file (default: folds/<name>_k<n_splits>.csv)")


# Settings that name the run rather than the recipe: a search space or a tuned file may not set them.
RUN_IDENTITY = {"model", "run_id", "folds", "fold_file", "repeat", "model_params", "device", "metric"}
AUG_FIELDS = ("freq_mask", "time_mask", "rotate", "shift", "scale", "crop_frames", "mixup_alpha", "cutmix_alpha",
              "noise_p", "gain_db", "time_shift", "pitch_shift")
FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
DEFAULTS = TrainConfig()


def flag_of(name: str) -> str:
    return FIELDS[name].metadata.get("flag") or "--" + name.replace("_", "-")


def make_train_config(values: dict[str, Any], source: str) -> TrainConfig:
    """Validate ``values`` (strict types, choices, no unknown keys) into a TrainConfig; ``source`` names where they came from."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(describe(e) for e in exc.errors()),
                          f"valid settings: python -m src.train --help (keys: {', '.join(sorted(FIELDS))})") from None


def describe(err: dict) -> str:
    """One pydantic error as ``key = value: what is wrong``."""
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "unexpected_keyword_argument":
        return f"unknown setting {loc!r}"
    return f"{loc} = {err.get('input')!r}: {err['msg']}"


def parse_value(text: str) -> Any:
    """``key=value`` values are Python literals when they parse (``[64,32]``, ``1e-3``, ``True``), else strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_pairs(pairs: list[str], flag: str = "--param") -> dict[str, Any]:
    out = {}
    for p in pairs:
        key, eq, val = p.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{flag} {p!r} is not KEY=VALUE", f"e.g. {flag} hidden=[64,32] or {flag} lr=1e-3")
        out[key.strip()] = parse_value(val.strip())
    return out


def route_params(flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one routing rule: keys that name a setting go to the trainer, all others to the model."""
    train = {k: v for k, v in flat.items() if k in FIELDS and k != "model_params"}
    model = {k: v for k, v in flat.items() if k not in FIELDS}
    if "model_params" in flat:
        raise ConfigError("model_params cannot be set as a parameter", "give model parameters one by one: --param hidden=[64]")
    return train, model


def add_train_flags(ap: argparse.ArgumentParser, skip: set[str] = frozenset({"model", "model_params"})) -> None:
    """One flag per TrainConfig field, typed, with help, default and choices from its declaration."""
    hints = typing.get_type_hints(TrainConfig)
    for name, f in FIELDS.items():
        if name in skip:
            continue
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": _help(f)}  # absent unless given
        t = hints[name]
        origin, args = typing.get_origin(t), typing.get_args(t)
        if t is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kw["choices"] = [a for a in args if a != ""] if name == "metric" else list(args)
        elif list in (origin, *(typing.get_origin(a) for a in args)):
            inner = next(typing.get_args(a)[0] for a in (t, *args) if typing.get_origin(a) is list)
            kw.update(nargs="+", type=inner)
        else:
            kw["type"] = t
        ap.add_argument(flag_of(name), **kw)


def _help(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    applies = f" [{' + '.join(f.metadata['applies'])} only]" if f.metadata.get("applies") else ""
    return f"{f.metadata['help']}{applies} (default: {default!r}, unless the config's [train] sets it)"


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags left at None were not given)."""
    return {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}


def changed(tc: TrainConfig) -> dict[str, Any]:
    """Settings that differ from their defaults."""
    return {k: getattr(tc, k) for k in FIELDS if getattr(tc, k) != getattr(DEFAULTS, k)}


def check_applicable(tc: TrainConfig, capabilities: set[str], model_desc: str, sources: dict[str, str],
                     soft: Callable[[str], bool] = lambda source: False) -> list[str]:
    """Refuse settings that do nothing for this model and task; ``sources`` says where each value came from.

    A value whose source is ``soft`` (the config's ``[train]`` section: competition-wide defaults, not a
    request for this run) is reset to its default instead, and its description returned so the caller
    can log and record it; every other value that does not apply is an error.
    """
    problems, dropped = [], []
    for name, value in changed(tc).items():
        missing = [need for need in FIELDS[name].metadata["applies"] if need not in capabilities]
        if not missing:
            continue
        source = sources.get(name, "the settings")
        text = f"{flag_of(name)} {value!r} (from {source}) applies to {' + '.join(missing)} only"
        if soft(source):
            setattr(tc, name, getattr(DEFAULTS, name))
            dropped.append(text)
        else:
            problems.append(text)
    if problems:
        raise ConfigError(f"settings that do not apply to {model_desc}: " + "; ".join(problems),
                          "remove them (from the command line, --param or --params) or choose a model they apply to")
    return dropped
