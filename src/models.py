"""Model registry: one name -> one builder, timm style.

``create_model(name, num_classes=..., in_features=... | in_chans=...)`` builds any
registered model. Each entry says which input it takes:

* ``vector``: a feature vector (B, D) — tabular features, MFCC/chroma summaries;
* ``spec``:   a 2-D spectrogram (B, 1, n_mels, T) — log-mel segments, mel images.

The training stage asks the registry for the input kind and feeds the model
accordingly.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from . import heads, musicnn
from .errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


@dataclass
class ModelSpec:
    name: str
    input: str  # "vector" | "spec"
    builder: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # Optuna search space: space(trial) -> flat dict of parameters; keys that are TrainConfig
    # fields (lr, weight_decay, batch_size, optimizer, ...) go there, the rest are model params.
    space: Callable[[Any], dict[str, Any]] | None = None
    transfer: bool = False  # a pretrained backbone with layer groups: freezing and layer decay apply
    kind: str = "torch"  # "torch": trained by gradient descent in src.train; "sklearn": a scikit-learn estimator (src.heads)
    tasks: tuple[str, ...] = ("classification", "multilabel", "regression")
    normalize: bool = True  # standardise inputs with training-fold statistics (False: the net normalises itself)
    recipe: str = "logmel"  # spectrogram recipe of the feature cache: "logmel" ([audio] of the config) or a model family's own

    @property
    def capabilities(self) -> set[str]:
        """What the model can use, in the tags of ``src.settings`` (the task's tag is added by the trainer)."""
        from .settings import NEURAL, SPEC, TRANSFER

        return ({SPEC} if self.input == "spec" else set()) | ({TRANSFER} if self.transfer else set()) | \
            ({NEURAL} if self.kind == "torch" else set())

    def describe(self) -> str:
        kind = "spectrogram" if self.input == "spec" else "feature-vector"
        extra = ", pretrained backbone" if self.transfer else (", scikit-learn" if self.kind == "sklearn" else "")
        return f"model {self.name} ({kind} input{extra})"

    def accepted_params(self) -> set[str] | None:
        """Constructor parameters a user may set (None: any, the builder forwards unknown keywords)."""
        sig = inspect.signature(self.builder).parameters
        names = {n for n, prm in sig.items() if prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)}
        names -= {"num_classes", "in_features", "input_shape", "name", "task", "seed"}
        if not self.transfer:
            names.discard("in_chans")  # only image backbones take a 3-channel view of the spectrogram
        if any(prm.kind == prm.VAR_KEYWORD for prm in sig.values()):
            return names | set(TIMM_KWARGS) if self.transfer else None
        return names

    def check_params(self, params: dict[str, Any]) -> None:
        """Refuse constructor parameters the model does not take (a typo such as ``hiden`` would crash mid-run)."""
        ok = self.accepted_params()
        bad = sorted(set(params) - ok) if ok is not None else []
        if bad:
            raise ConfigError(f"--param {', '.join(bad)}: {self.describe()} has no such parameter",
                              f"its parameters are {sorted(ok)}; train settings (lr, epochs, ...) are flags or --param of "
                              f"python -m src.train --help")


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, input: str, builder: Callable[..., Any], description: str = "", space: Callable | None = None,
             entry: dict[str, Any] | None = None, **defaults: Any) -> None:
    """Add a model: its input kind, its builder (a class or function whose keyword parameters are the model's
    parameters), its defaults, and ``entry`` for the other ModelSpec fields (kind, tasks, transfer, ...)."""
    REGISTRY[name] = ModelSpec(name, input, builder, defaults, description, space, **(entry or {}))


def get_spec(name: str) -> ModelSpec:
    """The registry entry of ``name`` (any timm model name is registered on first use)."""
    return resolve(name)


def create_model(name: str, num_classes: int, in_features: int | None = None, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``kwargs`` override the entry's defaults.

    Spectrogram models also take ``input_shape=(n_mels, T)``. For timm entries ``in_chans`` (1 or 3)
    is what the backbone sees: the 1-channel spectrogram is repeated (or stacked with its deltas,
    ``channels_mode="delta"``) to 3 channels; they also take ``pretrained`` and ``resize``.
    """
    spec = get_spec(name)
    params = {**spec.defaults, **kwargs}
    if spec.input == "vector":
        if not in_features:
            raise ValueError(f"model {name!r} takes feature vectors: pass in_features")
        params.pop("input_shape", None)
        return spec.builder(num_classes=num_classes, in_features=in_features, **params)
    return spec.builder(num_classes=num_classes, in_chans=in_chans, **params)


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}", f"choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# ----------------------------------------------------------------------------- vector models


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> activation -> [Dropout], repeated; then a linear head."""

    def __init__(self, in_features: int, num_classes: int, hidden: list[int], activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False):
        layers: list[nn.Module] = []
        prev = in_features
        for width in hidden:
            layers.append(nn.Linear(prev, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(_act(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        layers.append(nn.Linear(prev, num_classes))
        super().__init__(*layers)


def mlp_space(trial: Any) -> dict[str, Any]:
    """MLP: depth, widths, activation, dropout, batch-norm, lr, weight decay, batch size, optimizer."""
    depth = trial.suggest_int("depth", 1, 4)
    width = trial.suggest_categorical("width", [32, 64, 128, 256, 512])
    shrink = trial.suggest_categorical("shrink", [1.0, 0.5])
    return {
        "hidden": [max(8, int(width * shrink ** i)) for i in range(depth)],
        "activation": trial.suggest_categorical("activation", ["relu", "gelu", "silu", "elu", "tanh"]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
        "batch_norm": trial.suggest_categorical("batch_norm", [True, False]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128]),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd", "rmsprop"]),
    }


register("mlp", "vector", MLP, "configurable MLP on feature vectors", space=mlp_space,
         hidden=[256, 128], activation="relu", dropout=0.3, batch_norm=True)


def mlp_seed_space(trial: Any) -> dict[str, Any]:
    """The fixed 26-128-32-4 network: only the training recipe and the activation vary."""
    return {
        "activation": trial.suggest_categorical("activation", ["relu", "gelu", "silu", "elu", "tanh", "sigmoid"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128]),
        "optimizer": trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw", "adagrad", "rmsprop"]),
    }


register("mlp_seed", "vector", MLP, "the assignment's exact 26-128-32-4 network (for 26-d MFCC stats)", space=mlp_seed_space,
         hidden=[128, 32], activation="relu")


# ----------------------------------------------------------------------------- classic heads (scikit-learn, src.heads)

register("logreg", "vector", heads.build_logreg, "standardise + logistic regression (frozen embeddings, stats vectors)",
         space=heads.logreg_space, entry={"kind": "sklearn", "tasks": ("classification",)}, C=1.0)
register("svm", "vector", heads.build_svm, "standardise + RBF SVM with Platt probabilities", space=heads.svm_space,
         entry={"kind": "sklearn", "tasks": ("classification",)}, C=1.0, gamma="scale")
register("ridge", "vector", heads.build_ridge, "standardise + ridge regression (regression tasks)", space=heads.ridge_space,
         entry={"kind": "sklearn", "tasks": ("regression",)}, alpha=1.0)


# ----------------------------------------------------------------------------- spectrogram models
# Spectrogram builders take in_chans and input_shape = (n_mels, T): the training stage passes the
# segment shape so fixed-size heads (cnn_seed) can size their first linear layer.


class SeedCNN(nn.Module):
    """The assignment's CNN: 4 conv layers (kernel 5, 1-16-32-64-128), then FC x-1024-256-32-n_classes.

    Switches: ``pool`` (max-pool kernel 2 after each conv), ``padding`` (2 keeps the size),
    ``batch_norm`` (before the activation), ``activation``, ``dropout`` (in the FC stack).
    Without pooling the first FC layer is huge (128 * n_mels * T inputs), but it still runs.
    """

    def __init__(self, in_chans: int, num_classes: int, input_shape: tuple[int, int], pool: bool = True, padding: int = 2,
                 batch_norm: bool = False, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for c in (16, 32, 64, 128):
            layers.append(nn.Conv2d(prev, c, kernel_size=5, padding=padding))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(_act(activation))
            if pool:
                layers.append(nn.MaxPool2d(2))
            prev = c
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_chans, *input_shape)).numel()
        fc: list[nn.Module] = []
        for width in (1024, 256, 32):
            fc += [nn.Linear(flat, width), _act(activation)] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            flat = width
        self.head = nn.Sequential(*fc, nn.Linear(flat, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, n_mels, T)
        return self.head(self.features(x).flatten(1))  # (B, num_classes)


def cnn_seed_space(trial: Any) -> dict[str, Any]:
    return {
        "pool": trial.suggest_categorical("pool", [True, False]),
        "batch_norm": trial.suggest_categorical("batch_norm", [True, False]),
        "activation": trial.suggest_categorical("activation", ["relu", "gelu", "silu", "elu", "leaky_relu", "tanh"]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "optimizer": trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw", "adagrad", "rmsprop"]),
        "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32, 64]),
    }


register("cnn_seed", "spec", SeedCNN, "the assignment's CNN exactly (4 conv k5 + FC 1024-256-32), with switches",
         space=cnn_seed_space, pool=True, padding=2, batch_norm=False, activation="relu", dropout=0.0)


class ConvBlock(nn.Sequential):
    """``convs`` x (conv3x3-BN-act), then 2x2 average pooling (PANNs-style: avg keeps more texture than max)."""

    def __init__(self, cin: int, cout: int, activation: str = "relu", convs: int = 2, pool: str = "avg"):
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), _act(activation)]
        layers.append(nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2))
        super().__init__(*layers)


class AttentionPool(nn.Module):
    """Sound-event-detection head (PANNs' decision-level attention): per-frame class logits weighted by a learnt
    softmax over time, so a short event in a long segment decides its class without being averaged away."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.att = nn.Linear(in_dim, num_classes)
        self.cla = nn.Linear(in_dim, num_classes)  # registered last: src.inference.classifier_layer finds it

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C', T')
        x = self.dropout(x.transpose(1, 2))  # (B, T', C')
        w = torch.softmax(torch.tanh(self.att(x)), dim=1)  # (B, T', num_classes), sums to 1 over time
        return (w * self.cla(x)).sum(dim=1)  # (B, num_classes)


class SpecCNN(nn.Module):
    """From-scratch spectrogram CNN: conv blocks, mean over frequency, then over time either mean+max (default)
    followed by dropout and a linear layer, or ``time_pool="attention"`` (:class:`AttentionPool`, for sound events).

    The frequency-then-time pooling (as in PANNs CNN6/10) keeps it independent of segment length and
    lets the max over time pick the most typical moment of a clip; double convs per block buy most of
    the accuracy for the CPU time on small data.
    """

    def __init__(self, in_chans: int, num_classes: int, channels: list[int], activation: str = "relu", dropout: float = 0.3,
                 convs: int = 2, pool: str = "avg", input_shape: tuple[int, int] | None = None, time_pool: str = "meanmax"):
        super().__init__()
        if time_pool not in ("meanmax", "attention"):
            raise ConfigError(f"cnn time_pool = {time_pool!r}: expected 'meanmax' or 'attention'", "--param time_pool=attention")
        blocks, prev = [], in_chans
        for c in channels:
            blocks.append(ConvBlock(prev, c, activation, convs, pool))
            prev = c
        self.features = nn.Sequential(*blocks)
        self.time_pool = time_pool
        linear = nn.Sequential(nn.Dropout(dropout), nn.Linear(prev, num_classes))
        self.head = AttentionPool(prev, num_classes, dropout) if time_pool == "attention" else linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, n_mels, T)
        x = self.features(x).mean(dim=2)  # (B, C', T')
        if self.time_pool == "meanmax":
            x = x.mean(dim=2) + x.amax(dim=2)  # (B, C')
        return self.head(x)  # (B, num_classes)


def cnn_space(trial: Any) -> dict[str, Any]:
    """CNN: width, depth, convs per block, dropout, lr, weight decay, batch size, scheduler, SpecAugment, mixup."""
    base = trial.suggest_categorical("base_channels", [8, 16, 32])
    depth = trial.suggest_int("n_blocks", 3, 5)
    return {
        "channels": [base * 2 ** i for i in range(depth)],
        "convs": trial.suggest_int("convs", 1, 2),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
        "scheduler": trial.suggest_categorical("scheduler", ["none", "cosine", "onecycle"]),
        "freq_mask": trial.suggest_int("freq_mask", 0, 24, step=8),
        "time_mask": trial.suggest_int("time_mask", 0, 32, step=8),
        "mixup_alpha": trial.suggest_categorical("mixup_alpha", [0.0, 0.2, 0.4]),
    }


register("cnn", "spec", SpecCNN, "from-scratch spectrogram CNN (conv-BN-ReLU-avgpool x4, freq-mean + time mean/max pooling)",
         space=cnn_space, channels=[16, 32, 64, 128], activation="relu", dropout=0.3, convs=1, pool="avg")


class CRNN(nn.Module):
    """Conv blocks that pool frequency only, then a bidirectional GRU over time, mean+max pooled."""

    def __init__(self, in_chans: int, num_classes: int, input_shape: tuple[int, int], channels: list[int] = (32, 64, 64),
                 hidden: int = 64, dropout: float = 0.3, rnn: str = "gru"):
        super().__init__()
        blocks, prev = [], in_chans
        for c in channels:
            blocks += [nn.Conv2d(prev, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d((2, 1))]
            prev = c
        self.conv = nn.Sequential(*blocks)
        feat = prev * (input_shape[0] // 2 ** len(channels))
        self.rnn = (nn.GRU if rnn == "gru" else nn.LSTM)(feat, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, n_mels, T)
        x = self.conv(x)  # (B, C', n_mels / 2^k, T)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T, C' * n_mels')
        x, _ = self.rnn(x)  # (B, T, 2 * hidden)
        return self.head(torch.cat([x.mean(1), x.amax(1)], dim=1))


register("crnn", "spec", CRNN, "conv front end + bidirectional GRU over time", channels=[32, 64, 64], hidden=64, dropout=0.3)


class SeqLSTM(nn.Module):
    """LSTM over the time axis of a spectrogram/chromagram: each frame's bins are one time step (the NTUA lab task)."""

    def __init__(self, in_chans: int, num_classes: int, input_shape: tuple[int, int], hidden: int = 128, layers: int = 2,
                 bidirectional: bool = True, dropout: float = 0.2, pooling: str = "mean"):
        super().__init__()
        self.pooling = pooling
        self.lstm = nn.LSTM(in_chans * input_shape[0], hidden, num_layers=layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, T)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T, C*F)
        out, _ = self.lstm(x)  # (B, T, H)
        z = out[:, -1] if self.pooling == "last" else out.mean(1)
        return self.head(z)


register("lstm", "spec", SeqLSTM, "(bi)LSTM over spectrogram frames", hidden=128, layers=2, bidirectional=True, dropout=0.2,
         pooling="mean")


# ----------------------------------------------------------------------------- timm backbones


class SpecToImage(nn.Module):
    """Feed a 1-channel spectrogram to an image backbone: 1 or 3 channels (repeat or delta/delta-delta), optional resize."""

    def __init__(self, backbone: nn.Module, in_chans: int = 3, channels_mode: str = "repeat", resize: list[int] | None = None):
        super().__init__()
        if channels_mode not in ("repeat", "delta"):
            raise ConfigError(f"--param channels_mode={channels_mode!r} is not a channel mode", "use 'repeat' or 'delta'")
        self.backbone, self.in_chans, self.channels_mode = backbone, in_chans, channels_mode
        self.resize = tuple(resize) if resize else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, n_mels, T)
        if self.in_chans == 3:
            if self.channels_mode == "delta":
                d1 = torch.gradient(x, dim=-1)[0]
                x = torch.cat([x, d1, torch.gradient(d1, dim=-1)[0]], dim=1)  # (B, 3, n_mels, T)
            else:
                x = x.expand(-1, 3, -1, -1)
        if self.resize:
            x = nn.functional.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        return self.backbone(x)


def timm_space(trial: Any) -> dict[str, Any]:
    """timm backbones: freezing, layer decay, lr, weight decay, augmentation strength, input channels."""
    return {
        "freeze_epochs": trial.suggest_int("freeze_epochs", 0, 5),
        "layer_decay": trial.suggest_float("layer_decay", 0.5, 1.0),
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "freq_mask": trial.suggest_int("freq_mask", 0, 24, step=8),
        "time_mask": trial.suggest_int("time_mask", 0, 32, step=8),
        "mixup_alpha": trial.suggest_categorical("mixup_alpha", [0.0, 0.2, 0.4]),
        "in_chans": trial.suggest_categorical("in_chans", [1, 3]),
    }


TIMM_DEFAULTS: dict[str, Any] = {"pretrained": False, "channels_mode": "repeat", "resize": None, "drop_rate": 0.2}
TIMM_KWARGS = ("drop_rate", "drop_path_rate", "global_pool")  # timm.create_model keywords passed through
TIMM_NAMES = ("vgg16", "resnet18", "resnet50", "efficientnet_b0", "tf_efficientnet_lite0", "inception_v3")


def build_timm(name: str, in_chans: int, num_classes: int, pretrained: bool | str = False, channels_mode: str = "repeat",
               resize: list[int] | None = None, input_shape: tuple[int, int] | None = None, **timm_kwargs: Any) -> nn.Module:
    """``timm.create_model`` (through src.pretrained for offline weights), wrapped to take spectrograms."""
    from .pretrained import create_backbone

    if in_chans not in (1, 3):
        raise ConfigError(f"--param in_chans={in_chans}: timm backbones here take 1 or 3 channels", "use in_chans=1 or in_chans=3")
    if name == "inception_v3" and not resize and input_shape and min(input_shape) < 75:
        resize = [max(75, input_shape[0]), max(75, input_shape[1])]  # inception's stem needs >= 75 px
    net = create_backbone(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **timm_kwargs)
    return SpecToImage(net, in_chans, channels_mode, resize)


def _register_timm(name: str) -> None:
    builder = functools.partial(build_timm, name)
    REGISTRY[name] = ModelSpec(name, "spec", builder, dict(TIMM_DEFAULTS), f"timm {name} (pretrained via src.pretrained)",
                               timm_space, transfer=True)


for _n in TIMM_NAMES:
    _register_timm(_n)


# ----------------------------------------------------------------------------- music-pretrained networks (src.musicnn)


def musicnn_space(trial: Any) -> dict[str, Any]:
    """musicnn fine-tuning: lr, layer decay over front/mid/back end and head, freezing, weight decay, augmentation."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "layer_decay": trial.suggest_float("layer_decay", 0.3, 1.0),
        "freeze_epochs": trial.suggest_int("freeze_epochs", 0, 3),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
        "freq_mask": trial.suggest_int("freq_mask", 0, 16, step=8),
        "time_mask": trial.suggest_int("time_mask", 0, 32, step=16),
        "mixup_alpha": trial.suggest_categorical("mixup_alpha", [0.0, 0.2, 0.4]),
    }


for _name, _network in (("musicnn_msd", "MSD_musicnn"), ("musicnn_mtt", "MTT_musicnn")):
    register(_name, "spec", functools.partial(musicnn.create_musicnn, _network),
             f"musicnn pretrained on {_network[:3]} tags (offline weights from the musicnn wheel), fine-tuned; own 16 kHz recipe",
             space=musicnn_space, entry={"transfer": True, "normalize": False, "recipe": "musicnn"}, pretrained=True, dropout=0.5)


def resolve(name: str) -> ModelSpec:
    """A registered name, or any other timm model name (registered on first use)."""
    if name in REGISTRY:
        return REGISTRY[name]
    import timm

    if timm.is_model(name):
        _register_timm(name)
        return REGISTRY[name]
    raise ConfigError(f"unknown model {name!r}", f"choose a registered model {sorted(REGISTRY)} or any timm.list_models() name")
