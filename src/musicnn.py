"""musicnn music-tagging networks in PyTorch, with the original weights read offline.

The PyPI wheel ``musicnn==0.1.0`` (ISC licence, Pons & Serra 2019) ships TensorFlow-1 checkpoints
of four tagging networks; this module ports them exactly and converts the weights without
TensorFlow (``src.tf_checkpoint``):

=============== ======================================= ====================================
name            trained on (50 tags, see ``tags(name)``) embedding (``embed``)
=============== ======================================= ====================================
``MSD_musicnn`` Million Song Dataset (Last.fm tags)      penultimate dense layer, 200-d
``MTT_musicnn`` MagnaTagATune                            penultimate dense layer, 200-d
``MSD_vgg``     Million Song Dataset                     flattened last pooling, 256-d
``MTT_vgg``     MagnaTagATune                            flattened last pooling, 256-d
=============== ======================================= ====================================

Install the weights with ``pip install --no-deps -r requirements-nodeps.txt`` (``musicnn==0.1.0``
without its declared ``tensorflow`` / ``numpy<1.17`` dependencies, which nothing here needs).

Usage::

    from src.musicnn import load_musicnn, musicnn_input, tags
    net = load_musicnn("MSD_musicnn")            # eval mode, converted weights
    x = torch.from_numpy(musicnn_input(y_16k))   # (n_patches, 187, 96) log-mel patches
    logits = net(x)                              # (n, 50) tag logits; torch.sigmoid -> the package's probabilities
    emb = net.embed(x)                           # (n, 200) penultimate embedding
    feats = net.features(x)                      # every intermediate output, incl. mean_pool / max_pool (n, 753)
    net.replace_head(10)                         # fine-tune for 10 classes

**Weights.** ``load_musicnn`` converts the checkpoint once to
``<weights_dir>/<name>.safetensors`` (``weights_dir`` argument, else ``$MUSICNN_WEIGHTS_DIR``, else
``./cache/pretrained/musicnn``) and later loads read that file. The checkpoint comes from the
installed ``musicnn`` package, or from ``source=``: a ``musicnn-0.1.0-*.whl`` file (read in place,
nothing installed) or a folder holding ``<name>/.index`` or ``.index`` itself. A missing package,
a truncated or corrupt checkpoint (CRC-checked) or a corrupt converted file raises
:class:`PretrainedError` saying how to install the weights; a corrupt converted file is rebuilt
from the checkpoint when one is available.

**Input** (``INPUT``, ``musicnn_input``): 16 kHz mono audio, power mel spectrogram (n_fft 512,
hop 256, Hann, centred with reflect padding, 96 Slaney mel bands 0-8 kHz), power rounded to
float16 as the training data was stored, then ``log10(10000 * power + 1)`` computed in float32;
patches of 187 frames (3 s), hop 187 frames by default (the package's default: no overlap, the
tail shorter than a patch is dropped; a clip shorter than one patch is repeat-padded, as in
training). The networks normalise their input themselves (a trained BatchNorm on the input):
feed the log-mel patches as they are, without any further per-bin standardisation.

Note on the package's own extractor: it computes ``np.log10(10000 * mel.astype(np.float16) + 1)``.
Under NumPy < 2 (value-based casting, the package pins numpy<1.17) the product is float32; under
NumPy >= 2 it stays float16 and overflows to ``inf`` for every mel power above 6.55 (0.8-3% of the
bins of the loud GTZAN clips, in nearly every patch), and the TF graph then returns NaN (or, with
oneDNN kernels, one constant tag vector for every patch). ``musicnn_input`` reproduces the
NumPy < 2 (= training) behaviour.

**Layout and TF conventions.** ``forward`` takes ``(B, T, 96)`` (the package's layout: frames x
mel bands) or the workspace's ``(B, 1, 96, T)``. musicnn nets take any ``T`` (global pooling over
time); VGG nets need ``T = 187``. The port keeps TensorFlow's conventions: NHWC kernels transposed
to NCHW, BatchNorm epsilon 1e-3 (momentum 0.99 -> torch 0.01), ReLU *before* BatchNorm, TF "same"
padding of the even temporal kernels (128/64/32 frames: one more zero frame after than before),
explicit zero padding of the timbral and mid-end convolutions *after* the input BatchNorm, and the
back end's flatten interleaving ``[max_0, mean_0, max_1, mean_1, ...]``. Verified against the
original TensorFlow graph with ``scripts/verify_musicnn_tf.py`` (TF 2.21, 38 patches of real,
random and synthetic input): max |difference| <= 5.1e-7 on the tag probabilities and <= 4.3e-6 on
the embeddings for all four models (the same size as either side's own float32 rounding against a
float64 run); ``tests/test_musicnn.py`` keeps a TF-free reference of it.

Also here: ``create_musicnn`` (registry-style builder), ``layer_groups`` (frontend, midend,
backend, head; the nets also expose timm's ``group_matcher`` / ``get_classifier`` /
``reset_classifier`` so ``src.transfer`` works on them unchanged), ``tag_probabilities`` and
``embeddings`` (batched numpy helpers).
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, PretrainedError

log = logging.getLogger(__name__)

PACKAGE = "musicnn==0.1.0"
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
CONVERTER_VERSION = "1"
ENV_WEIGHTS_DIR = "MUSICNN_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("cache") / "pretrained" / "musicnn"  # relative to the working directory

INSTALL_FIX = ("install the weights (no network beyond the package registry): "
               "`pip install --no-deps -r requirements-nodeps.txt` (musicnn==0.1.0 without its TensorFlow dependency), "
               "or pass source=<musicnn-0.1.0-py3-none-any.whl> (`pip download --no-deps musicnn==0.1.0`), "
               f"or put converted <name>.safetensors files into ${ENV_WEIGHTS_DIR}")

# The spectrogram recipe the networks were trained on; a feature cache can key on this dict.
INPUT: dict[str, Any] = {
    "family": "musicnn",
    "sample_rate": 16000,
    "n_fft": 512,
    "win_length": 512,
    "hop_length": 256,
    "window": "hann",
    "center": True,
    "pad_mode": "reflect",
    "n_mels": 96,
    "fmin": 0.0,
    "fmax": 8000.0,
    "mel_scale": "slaney",  # librosa.filters.mel(htk=False, norm="slaney")
    "power": 2.0,
    "power_dtype": "float16",  # mel power rounded to float16 (how the training data was stored)
    "compression": "log10(10000*x+1)",  # computed in float32
    "patch_frames": 187,  # 3 s
    "patch_hop": 187,  # frames between patch starts (package default: no overlap)
    "pad_short": "repeat",
    "layout": "patches x frames x mels",
}

MSD_TAGS = ["rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
            "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
            "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
            "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
            "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
            "indie pop", "sad", "House", "happy"]
MTT_TAGS = ["guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano", "ambient",
            "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals", "no vocals",
            "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo",
            "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
            "no voice", "weird", "country", "metal", "female voice", "choral"]


def _check_name(name: str) -> str:
    if name not in MODELS:
        raise PretrainedError(f"unknown musicnn model {name!r}", f"choose one of {list(MODELS)}")
    return name


def tags(name: str) -> list[str]:
    """The 50 tag names of model ``name``, in output order."""
    return list(MSD_TAGS if _check_name(name).startswith("MSD") else MTT_TAGS)


# ----------------------------------------------------------------------------- input


def log_mel(y: np.ndarray, sr: int = 16000) -> np.ndarray:
    """``(frames, 96)`` float32 log-mel spectrogram of mono 16 kHz audio, the networks' recipe (``INPUT``)."""
    import librosa

    if sr != INPUT["sample_rate"]:
        raise ValueError(f"musicnn input needs {INPUT['sample_rate']} Hz audio, got {sr} Hz: resample first")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"musicnn input needs mono audio (1-d), got shape {y.shape}")
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=INPUT["n_fft"], hop_length=INPUT["hop_length"],
                                         win_length=INPUT["win_length"], window=INPUT["window"], center=INPUT["center"],
                                         pad_mode=INPUT["pad_mode"], power=INPUT["power"], n_mels=INPUT["n_mels"],
                                         fmin=INPUT["fmin"], fmax=INPUT["fmax"], htk=False, norm="slaney").T
    mel = np.minimum(mel, np.finfo(np.float16).max).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000) * mel + np.float32(1)).astype(np.float32)


def patches(spec: np.ndarray, hop: int | None = None, frames: int | None = None) -> np.ndarray:
    """Cut a ``(T, 96)`` spectrogram into ``(n, frames, 96)`` patches every ``hop`` frames (tail dropped;
    a spectrogram shorter than one patch is repeated to fill it)."""
    frames = frames or INPUT["patch_frames"]
    hop = hop or INPUT["patch_hop"]
    if spec.shape[0] == 0:
        raise ValueError("empty spectrogram")
    if spec.shape[0] < frames:
        spec = np.tile(spec, (int(np.ceil(frames / spec.shape[0])), 1))[:frames]
    starts = range(0, spec.shape[0] - frames + 1, hop)
    return np.stack([spec[s:s + frames] for s in starts]).astype(np.float32)


def musicnn_input(y: np.ndarray, sr: int = 16000, hop: int | None = None) -> np.ndarray:
    """``(n_patches, 187, 96)`` float32 log-mel patches of mono 16 kHz audio; ``hop`` in frames (default 187:
    no overlap, as the package; 93 gives the 50 % overlap of 1.5 s)."""
    return patches(log_mel(y, sr), hop)


# ----------------------------------------------------------------------------- networks


def _bn(n: int, dims: int) -> nn.Module:
    """BatchNorm with TensorFlow's defaults (epsilon 1e-3, momentum 0.99)."""
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(n, eps=1e-3, momentum=0.01)


def _to_ntf(x: torch.Tensor, n_mels: int) -> torch.Tensor:
    """(B, T, n_mels) from either (B, T, n_mels) or the workspace's (B, 1, n_mels, T)."""
    if x.dim() == 4 and x.shape[1] == 1 and x.shape[2] == n_mels:
        return x[:, 0].transpose(1, 2)
    if x.dim() == 3 and x.shape[2] == n_mels:
        return x
    raise ValueError(f"musicnn input must be (B, T, {n_mels}) or (B, 1, {n_mels}, T); got {tuple(x.shape)}")


class _FrontBlock(nn.Module):
    """conv (relu) -> BN -> max over all frequencies: (B, 1, T, F) -> (B, filters, T)."""

    def __init__(self, filters: int, kernel: tuple[int, int], pad: tuple[int, int]):
        super().__init__()
        self.pad = pad  # (frames before, frames after)
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn(filters, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(F.pad(x, (0, 0, *self.pad)))  # (B, filters, T, F')
        if self.bn.training:
            return self.bn(F.relu(z)).amax(dim=3)
        # Inference: ReLU and the per-channel BN affine map are monotone, so the max over frequency can be
        # taken before them: of z where the BN scale (gamma) is >= 0, the min of z where it is negative. Same
        # result (bit-identical in the tests), without two full passes over the (B, filters, T, F') map.
        lo, hi = torch.aminmax(z, dim=3)
        pooled = torch.where((self.bn.weight >= 0)[None, :, None], hi, lo)
        return self.bn(F.relu(pooled).unsqueeze(3)).squeeze(3)


def _same_pad(k: int) -> tuple[int, int]:
    """TensorFlow 'same' padding of a stride-1 kernel of size k: the extra frame goes after."""
    return (k - 1) // 2, (k - 1) - (k - 1) // 2


class _Tagger(nn.Module):
    """What both networks share: a ``head`` (the last linear layer) and four layer groups (``GROUPS``).

    The timm-style hooks (``get_classifier``, ``reset_classifier``, ``group_matcher``) let
    ``src.transfer`` (freezing, progressive unfreezing, layer decay) treat these nets like timm backbones.
    """

    GROUPS: dict[str, str] = {}
    EMBEDDING = "penultimate"  # the ``features`` key ``embed`` returns
    head: nn.Linear

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[self.EMBEDDING]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 96) or (B, 1, 96, T) -> (B, num_classes) tag logits
        return self.features(x)["logits"]

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh ``num_classes`` head (``nn.Linear``'s default init); everything else keeps its weights."""
        self.head = nn.Linear(self.head.in_features, num_classes).to(self.head.weight.device, self.head.weight.dtype)

    def replace_head(self, num_classes: int) -> None:
        self.reset_classifier(num_classes)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Regexes of the layer groups over parameter names, input first: frontend, midend, backend, head."""
        return dict(self.GROUPS)

    @property
    def num_classes(self) -> int:
        return self.head.out_features


class MusiCNN(_Tagger):
    """The musicnn tagger (``build_musicnn`` of the package): musically motivated front end, dense mid end,
    temporal-pooling back end.

    * front end: input BatchNorm; timbral convs 7 x 38 and 7 x 67 (204 filters each, time zero-padded 3+3,
      valid over frequency) and temporal convs 128 / 64 / 32 x 1 (51 filters, TF "same"), each ReLU -> BN ->
      max over frequency; concatenated to 561 channels per frame;
    * mid end: three 1-D convs over time (kernel 7, 64 filters, ReLU -> BN), the 2nd and 3rd residual; the
      front-end output and the three mid-end outputs are concatenated (dense connection): 753 channels;
    * back end: max and mean over time, interleaved (1506), BN, dropout, dense 200 + ReLU + BN (the
      embedding), dropout, dense ``num_classes`` (logits).
    """

    def __init__(self, num_classes: int = 50, n_mels: int = 96, midend_filters: int = 64, backend_units: int = 200,
                 dropout: float = 0.5):
        super().__init__()
        self.n_mels = n_mels
        self.input_bn = _bn(1, 2)
        self.timbral = nn.ModuleList([_FrontBlock(204, (7, int(0.4 * n_mels)), (3, 3)),
                                      _FrontBlock(204, (7, int(0.7 * n_mels)), (3, 3))])
        self.temporal = nn.ModuleList([_FrontBlock(51, (k, 1), _same_pad(k)) for k in (128, 64, 32)])
        front = 2 * 204 + 3 * 51
        self.midend = nn.ModuleList([nn.Conv1d(front if i == 0 else midend_filters, midend_filters, 7, padding=3)
                                     for i in range(3)])
        self.midend_bn = nn.ModuleList([_bn(midend_filters, 1) for _ in range(3)])
        self.pooled_dim = front + 3 * midend_filters
        self.pool_bn = _bn(2 * self.pooled_dim, 1)
        self.dense = nn.Linear(2 * self.pooled_dim, backend_units)
        self.dense_bn = _bn(backend_units, 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backend_units, num_classes)
        self.embed_dim = backend_units

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output the package's extractor returns, plus the logits.

        ``timbral`` (B, T, 408), ``temporal`` (B, T, 153), ``cnn1``/``cnn2``/``cnn3`` (B, T, 64),
        ``mean_pool`` / ``max_pool`` (B, 753), ``penultimate`` (B, 200), ``logits`` (B, num_classes).
        """
        x = _to_ntf(x, self.n_mels).unsqueeze(1)  # (B, 1, T, F): TF's NHWC with H = time, W = frequency
        x = self.input_bn(x)
        timbral = torch.cat([b(x) for b in self.timbral], dim=1)  # (B, 408, T)
        temporal = torch.cat([b(x) for b in self.temporal], dim=1)  # (B, 153, T)
        front = torch.cat([timbral, temporal], dim=1)  # (B, 561, T)
        c1 = self.midend_bn[0](F.relu(self.midend[0](front)))
        c2 = self.midend_bn[1](F.relu(self.midend[1](c1))) + c1
        c3 = self.midend_bn[2](F.relu(self.midend[2](c2))) + c2
        mid = torch.cat([front, c1, c2, c3], dim=1)  # (B, 753, T)
        max_pool, mean_pool = mid.amax(dim=2), mid.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF flatten of (B, 753, 2): max0, mean0, max1, ...
        pen = self.dense_bn(F.relu(self.dense(self.dropout(self.pool_bn(flat)))))
        logits = self.head(self.dropout(pen))
        t = lambda z: z.transpose(1, 2)  # noqa: E731  (B, C, T) -> the package's (B, T, C)
        return {"timbral": t(timbral), "temporal": t(temporal), "cnn1": t(c1), "cnn2": t(c2), "cnn3": t(c3),
                "mean_pool": mean_pool, "max_pool": max_pool, "penultimate": pen, "logits": logits}

    GROUPS = {"frontend": r"^(?:input_bn|timbral|temporal)\.", "midend": r"^midend(?:_bn)?\.",
              "backend": r"^(?:pool_bn|dense|dense_bn)\.", "head": r"^head\."}


class MusicVGG(_Tagger):
    """The package's ``vgg`` baseline: input BN, five 3x3 conv (128 filters, ReLU -> BN) + max-pool blocks
    (pools 4x1/2, 2x2, 2x2, 2x2, 4x4 over frames x bands), flatten (2 x 1 x 128, NHWC order), dense ``num_classes``.
    Needs 187-frame patches. ``embed`` is the flattened last pooling (256-d): the net has no hidden dense layer.
    """

    EMBEDDING = "flat"

    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, num_classes: int = 50, n_mels: int = 96, filters: int = 128, frames: int = 187, dropout: float = 0.5):
        super().__init__()
        self.n_mels, self.frames = n_mels, frames
        self.input_bn = _bn(1, 2)
        self.convs = nn.ModuleList([nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5)])
        self.bns = nn.ModuleList([_bn(filters, 2) for _ in range(5)])
        self.pools = nn.ModuleList([nn.MaxPool2d(k, s) for k, s in self.POOLS])
        self.block_dropout = nn.Dropout(0.25)
        self.dropout = nn.Dropout(dropout)
        h, w = frames, n_mels
        for (kh, kw), (sh, sw) in self.POOLS:
            h, w = (h - kh) // sh + 1, (w - kw) // sw + 1
        self.embed_dim = h * w * filters
        self.head = nn.Linear(self.embed_dim, num_classes)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``pool1`` ... ``pool5`` as (B, C, frames', bands') (the package returns NHWC), ``flat`` (B, 256), ``logits``."""
        x = _to_ntf(x, self.n_mels)
        if x.shape[1] != self.frames:
            raise ValueError(f"the VGG musicnn models need {self.frames}-frame patches, got {x.shape[1]}")
        x = self.input_bn(x.unsqueeze(1))
        out: dict[str, torch.Tensor] = {}
        for i, (conv, bn, pool) in enumerate(zip(self.convs, self.bns, self.pools)):
            if i:
                x = self.block_dropout(x)
            x = pool(bn(F.relu(conv(x))))
            out[f"pool{i + 1}"] = x
        out["flat"] = x.permute(0, 2, 3, 1).flatten(1)  # TF flattens NHWC
        out["penultimate"] = out["flat"]
        out["logits"] = self.head(self.dropout(out["flat"]))
        return out

    GROUPS = {"frontend": r"^(?:input_bn|convs\.[01]|bns\.[01])\.", "midend": r"^(?:convs|bns)\.[23]\.",
              "backend": r"^(?:convs|bns)\.4\.", "head": r"^head\."}


def build_musicnn(name: str, num_classes: int = 50, dropout: float = 0.5) -> nn.Module:
    """The architecture of ``name`` with random weights (``load_musicnn`` for the pretrained one)."""
    _check_name(name)
    return MusicVGG(num_classes, dropout=dropout) if name.endswith("vgg") else MusiCNN(num_classes, dropout=dropout)


def create_musicnn(name: str, num_classes: int, in_chans: int = 1, input_shape: tuple[int, int] | None = None,
                   pretrained: bool = True, weights_dir: str | Path | None = None, source: str | Path | None = None,
                   dropout: float = 0.5) -> nn.Module:
    """Registry-style builder: ``name`` with a ``num_classes`` head for ``(B, 1, 96, T)`` log-mel input.

    ``pretrained=True`` loads the converted weights (the tag head is replaced when ``num_classes != 50``);
    ``False`` is an explicit random initialisation. ``input_shape = (n_mels, T)`` is checked against the
    networks' input (96 mel bands; VGG: T = 187), so a segment of another recipe fails here, not mid-run.
    """
    _check_name(name)
    if in_chans != 1:
        raise ConfigError(f"--param in_chans={in_chans}: {name} takes the 1-channel log-mel patch", "leave in_chans out")
    if input_shape is not None:
        n_mels, frames = input_shape
        if n_mels != INPUT["n_mels"] or (name.endswith("vgg") and frames != INPUT["patch_frames"]):
            need = f"({INPUT['n_mels']}, {INPUT['patch_frames'] if name.endswith('vgg') else 'T'})"
            raise ConfigError(f"{name} needs musicnn log-mel segments {need} (16 kHz, n_fft 512, hop 256, "
                              f"log10(10000 x + 1)), got input_shape {tuple(input_shape)}",
                              "train it through src.train, which feeds it the feature cache's musicnn recipe")
    net = build_musicnn(name, num_classes, dropout=dropout) if not pretrained else \
        load_musicnn(name, weights_dir, source, num_classes=num_classes, dropout=dropout)
    for m in net.modules():  # fine-tuning on a few hundred patches: running statistics must follow the changing
        if isinstance(m, nn.modules.batchnorm._BatchNorm):  # features within an epoch (TF's 0.99 lags ~100 steps)
            m.momentum = 0.1
    return net


def layer_groups(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Parameter]]]]:
    """``[(group, [(param name, param), ...]), ...]`` from the input to the head: frontend, midend, backend, head.

    Every parameter is in exactly one group (checked). ``src.transfer.layer_groups`` gives the same
    grouping through ``group_matcher`` / ``get_classifier``.
    """
    import re

    groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in model.GROUPS}
    for pname, p in model.named_parameters():
        hits = [g for g, rx in model.GROUPS.items() if re.match(rx, pname)]
        if len(hits) != 1:
            raise ValueError(f"parameter {pname} matches layer groups {hits}")
        groups[hits[0]].append((pname, p))
    return list(groups.items())


# ----------------------------------------------------------------------------- TF checkpoint -> torch

_MUSICNN_MAP = (  # (torch prefix, TF conv/dense name or None, TF batch-norm name or None)
    ("input_bn", None, "batch_normalization"),
    ("timbral.0", "conv2d", "batch_normalization_1"),
    ("timbral.1", "conv2d_1", "batch_normalization_2"),
    ("temporal.0", "conv2d_2", "batch_normalization_3"),
    ("temporal.1", "conv2d_3", "batch_normalization_4"),
    ("temporal.2", "conv2d_4", "batch_normalization_5"),
    ("midend.0", "conv2d_5", None), ("midend_bn.0", None, "batch_normalization_6"),
    ("midend.1", "conv2d_6", None), ("midend_bn.1", None, "batch_normalization_7"),
    ("midend.2", "conv2d_7", None), ("midend_bn.2", None, "batch_normalization_8"),
    ("pool_bn", None, "batch_normalization_9"),
    ("dense", "dense", None),
    ("dense_bn", None, "batch_normalization_10"),
    ("head", "dense_1", None),
)
_VGG_MAP = (
    ("input_bn", None, "batch_normalization"),
    *((f"convs.{i}", f"{i + 1}CNN", None) for i in range(5)),
    *((f"bns.{i}", None, f"batch_normalization_{i + 1}") for i in range(5)),
    ("head", "dense", None),
)


def tf_variable_names(name: str) -> list[str]:
    """The TF variables the port uses (the checkpoint also holds Adam slots and beta powers: skipped)."""
    out = []
    for _, layer, bn in (_VGG_MAP if name.endswith("vgg") else _MUSICNN_MAP):
        if layer:
            out += [f"{layer}/kernel", f"{layer}/bias"]
        if bn:
            out += [f"{bn}/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")]
    return out


def convert_tf_state(name: str, tf: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TF variables -> this port's state dict: NHWC conv kernels (kh, kw, in, out) -> (out, in, kh, kw),
    mid-end kernels (7, C, 1, out) -> Conv1d (out, C, 7), dense (in, out) -> (out, in)."""
    _check_name(name)
    model = build_musicnn(name)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for prefix, layer, bn in (_VGG_MAP if name.endswith("vgg") else _MUSICNN_MAP):
        wkey = f"{prefix}.conv.weight" if prefix.startswith(("timbral", "temporal")) else f"{prefix}.weight"
        if layer:
            k = np.asarray(tf[f"{layer}/kernel"], dtype=np.float32)
            if k.ndim == 2:
                w = k.T
            elif prefix.startswith("midend"):
                w = k[:, :, 0, :].transpose(2, 1, 0)
            else:
                w = k.transpose(3, 2, 0, 1)
            out[wkey] = torch.from_numpy(np.ascontiguousarray(w))
            out[wkey.replace(".weight", ".bias")] = torch.from_numpy(np.asarray(tf[f"{layer}/bias"], dtype=np.float32))
        if bn:
            bprefix = f"{prefix}.bn" if prefix.startswith(("timbral", "temporal")) else prefix
            for tname, pname in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                 ("moving_variance", "running_var")):
                out[f"{bprefix}.{pname}"] = torch.from_numpy(np.asarray(tf[f"{bn}/{tname}"], dtype=np.float32).copy())
            out[f"{bprefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    if set(out) != set(target):
        raise PretrainedError(f"musicnn conversion of {name} is incomplete: missing {sorted(set(target) - set(out))[:5]}, "
                              f"extra {sorted(set(out) - set(target))[:5]}")
    for k, v in out.items():
        if v.shape != target[k].shape:
            raise PretrainedError(f"musicnn {name}: {k} converted to {tuple(v.shape)}, the port expects {tuple(target[k].shape)}")
    return out


def package_source() -> Path:
    """Folder of the installed ``musicnn`` package (its __init__ is empty: importing it loads no TensorFlow)."""
    import importlib

    try:
        mod = importlib.import_module("musicnn")
    except ImportError as e:
        raise PretrainedError("the musicnn package (which ships the pretrained musicnn weights) is not installed",
                              INSTALL_FIX) from e
    return Path(mod.__file__).resolve().parent


def read_tf_checkpoint(name: str, source: str | Path | None = None) -> dict[str, np.ndarray]:
    """The TF variables of ``name`` from the installed package, a wheel file, or a checkpoint folder."""
    from .tf_checkpoint import CheckpointFormatError, TensorBundle

    _check_name(name)
    src = Path(source) if source is not None else package_source()
    try:
        if src.is_file() and src.suffix == ".whl":
            with zipfile.ZipFile(src) as z:
                index = z.read(f"musicnn/{name}/.index")
                data = z.read(f"musicnn/{name}/.data-00000-of-00001")
            bundle = TensorBundle.from_bytes(index, [data], source=f"{src}!musicnn/{name}")
        else:
            folder = src / name if (src / name / ".index").is_file() else src
            bundle = TensorBundle(folder)
        return {v: bundle.read(v) for v in tf_variable_names(name)}
    except (CheckpointFormatError, KeyError, zipfile.BadZipFile, OSError) as e:
        missing = isinstance(e, (FileNotFoundError, KeyError)) or "not found" in str(e)
        raise PretrainedError(f"musicnn checkpoint {name} in {src} is {'incomplete' if missing else 'unreadable'}: {e}",
                              "reinstall it: `pip install --force-reinstall --no-deps -r requirements-nodeps.txt`"
                              if source is None else INSTALL_FIX) from e


# ----------------------------------------------------------------------------- converted weights (cached)


def weights_dir(path: str | Path | None = None) -> Path:
    """Where converted weights live: ``path``, else ``$MUSICNN_WEIGHTS_DIR``, else ``./cache/pretrained/musicnn``."""
    if path is not None:
        return Path(path)
    return Path(os.environ[ENV_WEIGHTS_DIR]) if os.environ.get(ENV_WEIGHTS_DIR) else DEFAULT_WEIGHTS_DIR


def weights_path(name: str, weights_dir_: str | Path | None = None) -> Path:
    return weights_dir(weights_dir_) / f"{_check_name(name)}.safetensors"


def _read_converted(path: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("model") != name or meta.get("converter") != CONVERTER_VERSION:
            raise ValueError(f"metadata {meta} is not model {name} / converter {CONVERTER_VERSION}")
        state = {k: f.get_tensor(k) for k in f.keys()}
    target = build_musicnn(name).state_dict()
    if set(state) != set(target) or any(state[k].shape != target[k].shape for k in target):
        raise ValueError("tensor names or shapes do not match the port")
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise ValueError("non-finite weights")
    return state


def convert(name: str, weights_dir: str | Path | None = None, source: str | Path | None = None,
            force: bool = False) -> dict[str, torch.Tensor]:
    """The converted state dict of ``name``: read from ``<weights_dir>/<name>.safetensors``, or converted from the
    TF checkpoint and written there (atomically; a read-only folder only logs a warning)."""
    from safetensors.torch import save_file

    path = weights_path(name, weights_dir)
    if path.is_file() and not force:
        try:
            return _read_converted(path, name)
        except Exception as e:  # truncated / foreign / stale file: rebuild it from the checkpoint if we can
            bad = f"converted musicnn weights {path} are unusable ({type(e).__name__}: {e})"
            try:
                tf = read_tf_checkpoint(name, source)
            except PretrainedError as pe:
                raise PretrainedError(bad, f"delete the file and {INSTALL_FIX}") from pe
            log.warning("%s; converting again from the checkpoint", bad)
    else:
        tf = read_tf_checkpoint(name, source)
    state = convert_tf_state(name, tf)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata={"model": name, "converter": CONVERTER_VERSION, "source": PACKAGE})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600
        os.replace(tmp, path)
        log.info("musicnn %s: converted the TF checkpoint to %s", name, path)
    except OSError as e:
        log.warning("musicnn %s: could not cache the converted weights in %s (%s); using them in memory", name, path, e)
    return state


def load_musicnn(name: str, weights_dir: str | Path | None = None, source: str | Path | None = None,
                 num_classes: int | None = None, dropout: float = 0.5) -> nn.Module:
    """Pretrained ``name`` (one of ``MODELS``) in eval mode. ``num_classes`` other than 50 replaces the tag head
    by a fresh one. Raises :class:`PretrainedError` (with the install command) when the weights are missing or
    corrupt; never returns random weights."""
    model = build_musicnn(name, dropout=dropout)
    model.load_state_dict(convert(name, weights_dir, source), strict=True)
    if num_classes is not None and num_classes != model.num_classes:
        model.replace_head(num_classes)
    model.name = name
    return model.eval()


@torch.no_grad()
def tag_probabilities(model: nn.Module, x: torch.Tensor | np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Sigmoid tag probabilities (what the package's ``extractor`` returns as the taggram), ``(n, 50)``."""
    return torch.sigmoid(_batched(model, x, batch_size, "logits")).numpy()


@torch.no_grad()
def embeddings(model: nn.Module, x: torch.Tensor | np.ndarray, batch_size: int = 16, layer: str = "penultimate") -> np.ndarray:
    """Embeddings of the patches ``x``: ``layer`` = penultimate (default), mean_pool, max_pool, or any ``features`` key."""
    return _batched(model, x, batch_size, layer).numpy()


def _batched(model: nn.Module, x: torch.Tensor | np.ndarray, batch_size: int, key: str) -> torch.Tensor:
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x.float()
    try:
        return torch.cat([model.features(x[i:i + batch_size])[key].cpu() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
