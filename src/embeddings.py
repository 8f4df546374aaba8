"""Music-pretrained front ends in the feature cache: their own spectrogram recipe, frozen embeddings and tags.

A pretrained network needs the input it was trained on. For the musicnn family (``src.musicnn``:
16 kHz, n_fft 512, hop 256, 96 mel bands, ``log10(10000 * power + 1)``, 187-frame patches) the feature
cache holds a second entry, keyed by that recipe's parameters (``src.features.build_cache(...,
recipe="musicnn")``), beside the config's own log-mel entry. From it, once per network:

* ``<network>_embed.npy`` (n_segments, 200): the penultimate embedding of every patch (frozen features);
* ``<network>_pool.npy`` (n_segments, 1506): the mid-level features, max- and mean-pooled over time;
* ``<network>_tags.npy`` (n_segments, 50): the pretrained head's tag probabilities of every patch.

``[features] vector = ["musicnn_msd"]`` gives vector models (``logreg``, ``svm``, ``mlp``) the clip's
mean and standard deviation of its patches' embeddings (400-d); ``"musicnn_msd_pool"`` the clip's mean of
the pooled mid-level features (1506-d: less specialised to the 50 tags than the penultimate layer);
:func:`clip_tags` gives the tags.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import write_npy
from .audio import AudioError, load_audio
from .config import AudioConfig

log = logging.getLogger(__name__)
PATCH_FRAMES = 187  # 3 s at 16 kHz / hop 256: the patch musicnn was trained on
# [features] vector name -> (network, cached output, clip statistics)
VECTOR_FEATURES = {"musicnn_msd": ("MSD_musicnn", "embed", ("mean", "std")), "musicnn_mtt": ("MTT_musicnn", "embed", ("mean", "std")),
                   "musicnn_msd_pool": ("MSD_musicnn", "pool", ("mean",)), "musicnn_mtt_pool": ("MTT_musicnn", "pool", ("mean",))}


def patch_hop(a: AudioConfig) -> int:
    """Patch hop in frames, in the config's own overlap ratio (segment_hop_seconds / segment_seconds)."""
    return max(1, round(PATCH_FRAMES * a.segment_hop_seconds / a.segment_seconds))


def recipe_params(recipe: str, a: AudioConfig) -> dict[str, Any]:
    """The cache key of a family's recipe: its fixed front end, the patch hop, and the config's cropping."""
    from .musicnn import INPUT

    if recipe != "musicnn":
        raise ValueError(f"no recipe {recipe!r} in src.embeddings")
    return {**INPUT, "patch_frames": PATCH_FRAMES, "patch_hop": patch_hop(a), "max_seconds": a.max_seconds,
            "silence_threshold": a.silence_threshold}


class FamilyExtractor:
    """Per-clip extractor of a family's recipe: decode at its rate, then its own patches, as (n, n_mels, frames)."""

    def __init__(self, recipe: str, a: AudioConfig):
        self.params = recipe_params(recipe, a)

    def __call__(self, path: str, window: tuple[float, float] | None = None) -> dict:
        p = self.params
        try:
            y = load_audio(path, p["sample_rate"], p["max_seconds"], p["silence_threshold"], window)
        except AudioError as exc:
            return {"error": exc.problem}
        return {"segments": self.segments(self.frames(y))}

    def frames(self, y: np.ndarray) -> np.ndarray:
        """(96, T) log-mel frames of the recipe (frame t centred on sample t * 256: src.predict streams them)."""
        from .musicnn import log_mel

        return log_mel(y, self.params["sample_rate"]).T

    def segments(self, frames: np.ndarray, hop: int | None = None) -> np.ndarray:
        """(96, T) -> (n, 96, 187) float16 patches every ``hop`` frames (default the recipe's; = ``musicnn_input``)."""
        from .musicnn import patches

        cut = patches(frames.T, hop or self.params["patch_hop"], self.params["patch_frames"])  # (n, 187, 96)
        return np.ascontiguousarray(cut.transpose(0, 2, 1)).astype(np.float16)


OUTPUTS = ("embed", "pool", "tags")


def segment_outputs(cache: Path, network: str, workdir: Path, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per cached patch: ``embed`` (n_seg, 200), ``pool`` (n_seg, 1506) and ``tags`` (n_seg, 50) of ``network``,
    computed in one pass the first time and kept in the recipe's cache folder (memory-mapped afterwards)."""
    paths = {o: cache / f"{network}_{o}.npy" for o in OUTPUTS}
    if all(p.is_file() for p in paths.values()):
        return {o: np.load(p, mmap_mode="r") for o, p in paths.items()}
    net = load_network(network, workdir)
    X = np.load(cache / "logmel.npy", mmap_mode="r")  # (n_seg, 96, 187) float16
    result = network_outputs(net, X, batch_size)
    for o, arr in result.items():
        write_npy(paths[o], arr)
    log.info("%s: embeddings, pooled features and tags of %d patches cached in %s", network, len(X), cache)
    return result


def load_network(network: str, workdir: str | Path = ".") -> Any:
    """The pretrained tagger ``network`` whose outputs are the cached features: weights from ``$MUSICNN_WEIGHTS_DIR``
    where set (a Kaggle dataset; as src.train does), else the workdir's ``cache/pretrained/musicnn``."""
    import os

    from .musicnn import ENV_WEIGHTS_DIR, load_musicnn

    local = Path(workdir) / "cache" / "pretrained" / "musicnn"
    return load_musicnn(network, weights_dir=None if os.environ.get(ENV_WEIGHTS_DIR) else local)


def network_outputs(net: Any, X: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """``embed`` (n, 200), ``pool`` (n, 1506) and ``tags`` (n, 50) of patches ``X`` (n, 96, 187), in batches."""
    import torch

    parts: dict[str, list[np.ndarray]] = {o: [] for o in OUTPUTS}
    with torch.no_grad():
        for s in range(0, len(X), batch_size):
            out = net.features(torch.from_numpy(np.asarray(X[s:s + batch_size], dtype=np.float32)).unsqueeze(1))
            parts["embed"].append(out["penultimate"].numpy())
            parts["pool"].append(torch.cat([out["max_pool"], out["mean_pool"]], dim=1).numpy())
            parts["tags"].append(torch.sigmoid(out["logits"]).numpy())
    if not len(X):
        return {"embed": np.zeros((0, 200), np.float32), "pool": np.zeros((0, 1506), np.float32), "tags": np.zeros((0, 50), np.float32)}
    return {o: np.concatenate(v).astype(np.float32) for o, v in parts.items()}


def segment_stats(values: np.ndarray, seg_clip: np.ndarray, n: int, stats: tuple[str, ...]) -> np.ndarray:
    """(n, d * len(stats)) per-clip mean (and std) of segment values (float64 sums; NaN for a clip without segments)."""
    d = values.shape[1]
    cnt = np.bincount(seg_clip, minlength=n).astype(np.float64)[:, None]
    total = np.zeros((n, d))
    np.add.at(total, seg_clip, values)
    mean = np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)
    parts = [mean]
    if "std" in stats:
        sq = np.zeros((n, d))
        np.add.at(sq, seg_clip, np.asarray(values, dtype=np.float64) ** 2)
        parts.append(np.sqrt(np.maximum(np.where(cnt > 0, sq / np.maximum(cnt, 1), np.nan) - mean ** 2, 0)))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _per_clip(cache: Path, values: np.ndarray, stats: tuple[str, ...]) -> pd.DataFrame:
    """Per-clip mean (and std) of segment values, indexed by (split, id) of the recipe cache's clips."""
    clips = pd.read_csv(cache / "clips.csv", keep_default_na=False, dtype={"id": str})
    table = segment_stats(values, np.load(cache / "seg_clip.npy"), len(clips), stats)
    return pd.DataFrame(table, index=pd.MultiIndex.from_arrays([clips["split"], clips["id"]]))


def clip_embedding_stats(prep: Any, name: str) -> np.ndarray:
    """``[features] vector`` entry ``name`` (e.g. ``musicnn_msd``): per clip, statistics of its patches' outputs
    (see the module docstring), in the order of the config's own cache (clips are matched by split and id, so
    the two recipes' caches need not list the same clips in the same order)."""
    network, output, stats = VECTOR_FEATURES[name]
    cache = prep.recipe_cache("musicnn")
    values = segment_outputs(cache, network, prep.workdir)[output]
    table = _per_clip(cache, np.asarray(values), stats)
    order = pd.read_csv(prep.cache / "clips.csv", keep_default_na=False, dtype={"id": str})
    return table.reindex(pd.MultiIndex.from_arrays([order["split"], order["id"]])).to_numpy(np.float32)


def clip_tags(prep: Any, network: str = "MSD_musicnn", split: str = "train") -> pd.DataFrame:
    """Mean tag probabilities per clip of ``split`` (rows: clip ids, columns: the network's 50 tags)."""
    from .musicnn import tags

    cache = prep.recipe_cache("musicnn")
    table = _per_clip(cache, np.asarray(segment_outputs(cache, network, prep.workdir)["tags"]), ("mean",))
    table.columns = tags(network)
    return table.xs(split, level=0) if split in table.index.get_level_values(0) else table.iloc[:0]
