"""Model registry: one name -> one builder, timm style.

``create_model(name, num_classes=..., in_features=... | in_chans=...)`` builds any
registered model. Each entry says which input it takes:

* ``vector``: a feature vector (B, D) — tabular features, MFCC/chroma summaries;
* ``spec``:   a 2-D spectrogram (B, 1, n_mels, T) — log-mel segments, mel images.

The training stage asks the registry for the input kind and feeds the model
accordingly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

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


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, input: str, description: str = "", space: Callable | None = None, **defaults: Any) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        REGISTRY[name] = ModelSpec(name, input, fn, defaults, description, space)
        return fn
    return deco


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(REGISTRY)}")
    return REGISTRY[name]


def create_model(name: str, num_classes: int, in_features: int | None = None, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``kwargs`` override the entry's defaults."""
    spec = get_spec(name)
    params = {**spec.defaults, **kwargs}
    if spec.input == "vector":
        if not in_features:
            raise ValueError(f"model {name!r} takes feature vectors: pass in_features")
        return spec.builder(num_classes=num_classes, in_features=in_features, **params)
    return spec.builder(num_classes=num_classes, in_chans=in_chans, **params)


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
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


@register("mlp", "vector", "configurable MLP on feature vectors", space=mlp_space, hidden=[256, 128], activation="relu", dropout=0.3, batch_norm=True)
def build_mlp(in_features: int, num_classes: int, **kw: Any) -> nn.Module:
    return MLP(in_features, num_classes, **kw)


def mlp_seed_space(trial: Any) -> dict[str, Any]:
    """The fixed 26-128-32-4 network: only the training recipe and the activation vary."""
    return {
        "activation": trial.suggest_categorical("activation", ["relu", "gelu", "silu", "elu", "tanh", "sigmoid"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128]),
        "optimizer": trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw", "adagrad", "rmsprop"]),
    }


@register("mlp_seed", "vector", "the assignment's exact 26-128-32-4 network (for 26-d MFCC stats)", space=mlp_seed_space, hidden=[128, 32], activation="relu")
def build_mlp_seed(in_features: int, num_classes: int, **kw: Any) -> nn.Module:
    return MLP(in_features, num_classes, **kw)


# ----------------------------------------------------------------------------- spectrogram models


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, activation: str = "relu"):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), _act(activation), nn.MaxPool2d(2))


class SmallCNN(nn.Module):
    """conv3x3-BN-act-maxpool blocks, global average pooling, dropout, linear head.

    Global pooling makes it independent of the segment length.
    """

    def __init__(self, in_chans: int, num_classes: int, channels: list[int], activation: str = "relu", dropout: float = 0.3):
        super().__init__()
        blocks, prev = [], in_chans
        for c in channels:
            blocks.append(ConvBlock(prev, c, activation))
            prev = c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(prev, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, n_mels, T)
        x = self.features(x)  # (B, C', n_mels / 2^k, T / 2^k)
        return self.head(x.mean(dim=(2, 3)))  # (B, num_classes)


def cnn_space(trial: Any) -> dict[str, Any]:
    """CNN: width, depth, dropout, lr, weight decay, batch size (augmentation keys join with the training engine)."""
    base = trial.suggest_categorical("base_channels", [8, 16, 32])
    depth = trial.suggest_int("n_blocks", 3, 5)
    return {
        "channels": [base * 2 ** i for i in range(depth)],
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
    }


@register("cnn", "spec", "small from-scratch CNN on log-mel segments (conv-BN-ReLU-pool x4)", space=cnn_space, channels=[16, 32, 64, 128], activation="relu", dropout=0.3)
def build_cnn(in_chans: int, num_classes: int, **kw: Any) -> nn.Module:
    return SmallCNN(in_chans, num_classes, **kw)
