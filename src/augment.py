"""Spectrogram augmentation: SpecAugment, rotation/shift/scale, random time crop, mixup/cutmix, TTA.

All of it is training-time only: the training loop applies it to training batches and
nothing else. Test-time augmentation is a separate, explicit option (:func:`tta_views`).
The strengths are train settings (``src.settings``: ``freq_mask``, ``time_mask``, ``n_masks``,
``rotate``, ``shift``, ``scale``, ``aug_p``, ``crop_frames``, ``mixup_alpha``, ``cutmix_alpha``).
"""
from __future__ import annotations

import numpy as np
import torch

from .settings import TrainConfig


def crop_time(X: np.ndarray, frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """(B, F, T) -> (B, F, frames): random start per sample with ``rng``, centre crop without."""
    T = X.shape[-1]
    if not frames or frames >= T:
        return X
    if rng is None:
        s = (T - frames) // 2
        return X[..., s:s + frames]
    starts = rng.integers(0, T - frames + 1, size=len(X))
    return np.stack([x[..., s:s + frames] for x, s in zip(X, starts)])


_AFFINE_CACHE: dict = {}


def affine(X: np.ndarray, cfg: TrainConfig, seed: int, fill: float) -> np.ndarray:
    """Per-sample rotation/shift/scale with albumentations (CPU, numpy). X: (B, F, T) float32 raw dB.

    ``fill`` (the training fold's mean level) pads the uncovered border, so it reads as
    average energy rather than as silence or as a loud edge.
    """
    import albumentations as A

    key = (cfg.rotate, cfg.shift, cfg.scale, cfg.aug_p, round(fill, 4))
    if key not in _AFFINE_CACHE:
        _AFFINE_CACHE[key] = A.Compose([A.Affine(rotate=(-cfg.rotate, cfg.rotate), translate_percent=(-cfg.shift, cfg.shift),
                                                 scale=(1 - cfg.scale, 1 + cfg.scale), border_mode=0, fill=float(fill), p=cfg.aug_p)],
                                       seed=0)
    tf = _AFFINE_CACHE[key]
    tf.set_random_seed(seed)
    return np.stack([tf(image=x)["image"] for x in X]).astype(np.float32)


def spec_augment(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """SpecAugment masks drawn independently per sample, on the batch's own device.

    x: (B, F, T) *normalised* input, so the mask value 0 is the training mean, not 0 dB.
    """
    import torchaudio.transforms as T

    x = x.unsqueeze(1)  # (B, 1, F, T): iid_masks needs a channel dim
    for _ in range(cfg.n_masks):
        if cfg.freq_mask:
            x = T.FrequencyMasking(cfg.freq_mask, iid_masks=True)(x)
        if cfg.time_mask:
            x = T.TimeMasking(cfg.time_mask, iid_masks=True)(x)
    return x.squeeze(1)


def mix_batch(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """mixup or time-cutmix; returns mixed inputs and soft targets (B, n_classes).

    ``y``: class indices (B,), or a multi-label matrix (B, C) whose mixed target is the lam-weighted mix or, with
    ``mixup_labels = "max"``, the element-wise max (both sounds are present in the mixture: their union)."""
    y_soft = y.float() if y.ndim == 2 else torch.nn.functional.one_hot(y, n_classes).float()
    modes = [m for m, a in (("mixup", cfg.mixup_alpha), ("cutmix", cfg.cutmix_alpha)) if a > 0]
    if not modes or len(x) < 2:
        return x, y_soft
    mode = modes[rng.integers(len(modes))]
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    if mode == "mixup":
        lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
        x = lam * x + (1 - lam) * x[perm]
    else:  # cutmix along time: a block of frames comes from the partner sample
        lam = float(rng.beta(cfg.cutmix_alpha, cfg.cutmix_alpha))
        T = x.shape[-1]
        w = int(round(T * (1 - lam)))
        s = int(rng.integers(0, T - w + 1))
        x = x.clone()
        x[..., s:s + w] = x[perm][..., s:s + w]
        lam = 1 - w / T
    if y.ndim == 2 and cfg.mixup_labels == "max":
        return x, torch.maximum(y_soft, y_soft[perm])
    return x, lam * y_soft + (1 - lam) * y_soft[perm]


def tta_views(X: np.ndarray, n: int, frames: int) -> list[np.ndarray]:
    """``n`` evenly spaced time crops (or circular shifts when not cropping) whose predictions get averaged."""
    T = X.shape[-1]
    if frames and frames < T:
        starts = np.linspace(0, T - frames, n).round().astype(int)
        return [X[..., s:s + frames] for s in starts]
    shifts = np.linspace(0, T, n, endpoint=False).round().astype(int)
    return [np.roll(X, s, axis=-1) for s in shifts]
