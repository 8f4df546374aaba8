"""Embedding space: does a trained network separate the classes better than its input does?

``python -m src.study embeddings RUN [RUN ...] [--out DIR] [--perplexity 30]`` takes every out-of-fold
(OOF) clip of each run and its representation from the run's OWN fold model (fold k's clips go through
``fold<k>.pt``, the model that never trained on them): the penultimate representation, i.e. the input of
the network's final Linear layer (a forward pre-hook, ``src.inference.penultimate``). Spectrogram models
see segments; a clip's representation is the mean over its segments. A scikit-learn head (logreg, svm)
has no penultimate layer: its representation is its input vector (the table says so).

Writes ``reports/embeddings/``: ``table.csv``/``table.md`` (one row per run: silhouette in the original
representation space, cosine and euclidean, the same for the model's input, 1-NN and nearest-centroid accuracy,
how often a clip's nearest neighbour comes from its own fold's model, and a check that the recomputed class
probabilities equal the run's ``oof.npy``), ``embeddings.png`` (a row per run: PCA of the input, PCA and t-SNE
of the representation, UMAP too where ``umap`` is installed; colour = class, marker = fold) and
``<run>_embeddings.npz`` (ids, class, fold, representation per clip).

Why the nearest-centroid score: the k fold models' spaces are not aligned, and stratified folds put a class's
clips into different folds, so distances between pooled OOF clips partly measure model differences. Inside
one fold model's space (its held-out clips vs its training clips' class centroids) the comparison is fair.
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cli
from ..artifacts import save_figure, write_npz
from ..config import load_config, signature_diff
from ..errors import CheckpointError, ConfigError, RunError
from ..features import prepare, run_recipe
from ..folds import load_folds_for
from ..inference import aggregate, decode, load_fold_model, penultimate
from ..models import get_spec
from ..runs import RunArtifacts, fold_file_path, load_run
from ..settings import FIELDS, TrainConfig, make_train_config
from .report import report_dir, write_table

log = logging.getLogger(__name__)
STUDIES = ("embeddings",)
PENULTIMATE = "penultimate (input of the final Linear layer)"
HEAD_INPUT = "input vector (scikit-learn head: no penultimate layer)"
MARKERS = "os^Dv<>phX"
NOTES = """\
- Representation: every OOF clip through its own fold's model (the one that did not train on it); spectrogram
  models: mean over the clip's segments. `oof_max_abs_diff`: the class probabilities recomputed from these
  forward passes vs the run's `oof.npy` (about 0: the right checkpoint fed the right rows; empty with TTA).
- Silhouette (-1..1, higher = tighter, better separated classes) of the pooled OOF representations in their
  ORIGINAL space, cosine and euclidean; `input_*`: the same for the model's input (vector features, or the mean
  log-mel segment flattened), z-scored per feature. `knn1_*`: leave-one-out 1-nearest-neighbour accuracy (cosine).
- Caveat of the pooled space: it joins k models' spaces, which are not aligned, and stratified folds put the
  clips of one class into different folds. `nn_same_fold` (share of clips whose nearest neighbour comes from
  the same fold, i.e. the same model; `nn_same_fold_chance` if folds mixed freely) above chance means the pooled
  silhouette and 1-NN measure the models' disagreement as much as the classes.
- `centroid_accuracy`: leakage-free separation inside each fold model's own space: fold k's held-out clips are
  assigned to the nearest (cosine) class centroid of fold k's training clips, both embedded by model k.
  `input_centroid_accuracy`: the same on the input (z-scored with the training clips' statistics).
- Scatter plots are projections (PCA, t-SNE) of the pooled space: look, but read the numbers. Few clips per
  class make every number here noisy.
"""


@dataclass
class RunSpace:
    """One run's OOF clips: class, fold, representation and model input, all row-aligned."""

    name: str
    model: str
    source: str
    classes: list[str]
    ids: np.ndarray  # (n,)
    y: np.ndarray  # (n,) class index
    fold: np.ndarray  # (n,)
    Z: np.ndarray  # (n, D) representation per clip
    X: np.ndarray  # (n, D_in) model input per clip
    oof_diff: float  # max |recomputed probabilities - oof.npy|; NaN where not checkable
    ncm: float  # nearest-centroid accuracy in the fold models' spaces (see run_space)
    input_ncm: float  # the same on the z-scored input
    seconds: float


def add_arguments(ap: argparse.ArgumentParser, name: str) -> None:
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run ids under <workdir>/runs or run folders (classification, not ensembles)")
    cli.add_common(ap, config=False)
    ap.add_argument("--config", help="the competition's config, only for runs whose recorded workspace config file is gone")
    ap.add_argument("--out", help="report folder; None: <workdir>/reports/embeddings")
    ap.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (lowered to n_clips - 1 when larger)")
    ap.add_argument("--seed", type=int, default=0, help="seed of t-SNE / UMAP")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="where the fold models run")


def run(args: argparse.Namespace) -> Path:
    """Representations of every run (all refused up front if one is an ensemble), the table, the figure."""
    from ..inference import resolve_device

    out = report_dir(args.workdir, "embeddings", args.out)
    arts = [load_run(r, args.workdir) for r in args.runs]
    for art in arts:  # refuse before any forward pass
        check_single_model(art)
    device = resolve_device(args.device)
    spaces = [run_space(art, args.workdir, args.config, device) for art in arts]
    rows = [score_space(s) for s in spaces]
    for s in spaces:
        write_npz(out / f"{s.name}_embeddings.npz", ids=s.ids.astype(str), y=s.y, fold=s.fold, Z=s.Z.astype(np.float32))
    fig_path = plot_spaces(spaces, out / "embeddings.png", args.perplexity, args.seed)
    df = pd.DataFrame(rows)
    write_table(out, df, title="Embedding space: class separation of the OOF representations (clip level)",
                notes=NOTES + f"\nFigure: {fig_path.name} (t-SNE perplexity {args.perplexity}, seed {args.seed}).\n")
    log.info("embeddings: %d run(s) -> %s", len(spaces), out)
    return out


# ----------------------------------------------------------------------------- representations


def check_single_model(art: RunArtifacts) -> None:
    """An ensemble has no network of its own; a regression run has no classes to colour or separate."""
    members = art.config.get("members")
    if members or art.config.get("train", {}).get("model") == "ensemble":
        names = [Path(m).name for m in members or []]
        raise RunError(f"run {art.name} is an ensemble of {names}: it has no single network, so no penultimate layer",
                       f"pick a member, e.g. python -m src.study embeddings {names[0] if names else '<member run>'}")
    if art.config.get("task") != "classification":
        raise RunError(f"run {art.name} is a {art.config.get('task')} run: the study scores class separation",
                       "pick a classification run")


def run_workspace(art: RunArtifacts, config: str | None, workdir: str | Path):
    """The run's workspace config (its recorded file, else ``--config``), refused if its inputs changed since training."""
    recorded = Path(art.config["workspace"]["path"])
    path = recorded if recorded.is_file() else config
    if path is None:
        raise ConfigError(f"run {art.name} was trained with {recorded}, which no longer exists",
                          "pass --config with the competition's config (same data and audio settings)")
    cfg = load_config(path, workdir)
    diff = signature_diff(art.config["workspace"], cfg.to_dict())
    if diff:
        raise ConfigError(f"{cfg.path} differs from what run {art.name} was trained on ({', '.join(diff)})",
                          "restore those settings or pass --config with the run's original config")
    return cfg


def run_train_config(art: RunArtifacts) -> TrainConfig:
    """The run's train settings (keys this version does not know are left out)."""
    train = {k: v for k, v in art.config["train"].items() if k in FIELDS}
    return make_train_config(train, f"{art.root}/config.json [train]")


def run_space(art: RunArtifacts, workdir: str | Path, config: str | None, device) -> RunSpace:
    """Representation and input of every OOF clip, each from its own fold's model; segments averaged per clip.

    Every fold model also embeds the other folds' clips, for the nearest-centroid score only: held-out clips of
    fold k against class centroids of fold k's training clips, all in model k's space (the only leakage-free way
    to compare clips of one class, which stratified folds put in different folds, hence different models).
    """
    t0 = time.perf_counter()
    cfg, tc = run_workspace(art, config, workdir), run_train_config(art)
    prep = prepare(cfg, workdir)
    if prep.ds.classes != art.config["classes"]:
        raise RunError(f"run {art.name} has classes {art.config['classes']}, the data now {prep.ds.classes}",
                       "re-train the run on the current data")
    spec = get_spec(tc.model)
    folds_df, _ = load_folds_for(prep, workdir, fold_file_path(art, workdir))  # ids, order, labels and groups checked
    fold_of_row = folds_df[art.config.get("fold_column", "fold")].to_numpy()
    items = prep.items(spec.input, "train", run_recipe(spec.recipe, tc))
    idx = np.flatnonzero(np.isin(fold_of_row[items.row], art.metrics["folds_done"]))
    rows, local = np.unique(items.row[idx], return_inverse=True)  # the analysed clips; local: item -> clip
    X_items = np.asarray(items.X[idx], dtype=np.float32)  # (n_items, D) or (n_items, n_mels, T)
    fold, y = fold_of_row[rows], prep.ds.labels("train")[rows]
    Z = P = None
    hits = 0
    for k in art.metrics["folds_done"]:
        feats, probs = fold_forward(art.root, k, spec, X_items, tc, device, len(art.config["classes"]))
        Zk = aggregate(feats, local, len(rows), np.zeros(feats.shape[1]), "mean")  # (n_clips, D) in model k's space
        own = fold == k
        Z = np.zeros_like(Zk) if Z is None else Z
        P = np.zeros((len(rows), probs.shape[1]), np.float32) if P is None else P
        Z[own] = Zk[own]
        P[own] = aggregate(probs, local, len(rows), np.zeros(probs.shape[1]), tc.aggregate)[own]
        hits += nearest_centroid_hits(Zk, y, own)
        log.info("%s fold %d: %d clip(s) -> representation of %d dims", art.name, k, int(own.sum()), Zk.shape[1])
    X = aggregate(X_items.reshape(len(idx), -1), local, len(rows), 0.0, "mean")  # (n_clips, D_in)
    input_hits = sum(nearest_centroid_hits(X, y, fold == k, standardise=True) for k in art.metrics["folds_done"])
    checkable = spec.input == "vector" or tc.tta <= 1  # TTA predictions average views this forward pass does not make
    diff = float(np.abs(P - art.oof[rows]).max()) if checkable else float("nan")
    return RunSpace(art.name, tc.model, HEAD_INPUT if spec.kind == "sklearn" else PENULTIMATE, list(art.config["classes"]),
                    prep.ds.train["id"].to_numpy()[rows], y, fold, Z, X, diff, hits / len(rows), input_hits / len(rows),
                    time.perf_counter() - t0)


def nearest_centroid_hits(Z: np.ndarray, y: np.ndarray, test: np.ndarray, standardise: bool = False) -> int:
    """How many held-out clips (``test``) lie nearest (cosine) to their own class's centroid of the other clips;
    ``standardise``: z-score with the other clips' statistics first (for raw input features)."""
    from sklearn.metrics.pairwise import cosine_similarity

    train = ~test
    if standardise:
        sd = Z[train].std(0)
        Z = (Z - Z[train].mean(0)) / np.where(sd > 1e-12, sd, 1.0)
    classes = np.unique(y[train])
    centroids = np.stack([Z[train & (y == c)].mean(0) for c in classes])  # (n_classes, D)
    return int((classes[cosine_similarity(Z[test], centroids).argmax(1)] == y[test]).sum())


def fold_forward(root: Path, k: int, spec, X: np.ndarray, tc: TrainConfig, device, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(representation, class probabilities) per item from fold k's saved model: the penultimate layer of a network,
    or the input vector of a scikit-learn head."""
    if spec.kind == "sklearn":
        import joblib

        from ..heads import head_predict

        path = root / f"fold{k}.joblib"
        if not path.is_file():
            raise CheckpointError(f"{path} not found", "train the fold first, or pick a finished run")
        est = joblib.load(path)["estimator"]
        return X.reshape(len(X), -1), head_predict(est, X, n_classes, True)
    model, meta = load_fold_model(root / f"fold{k}.pt", device)
    if meta.get("fold", k) != k:
        raise CheckpointError(f"{root}/fold{k}.pt says it is the model of fold {meta['fold']}", "restore the run's checkpoints")
    feats, out = penultimate(model, X, tc.batch_size, tc.crop_frames)  # (n, D), (n, C) logits
    return feats, decode(model, out, "classification")


# ----------------------------------------------------------------------------- scores


def zscore(X: np.ndarray) -> np.ndarray:
    """Per-feature standardisation; constant features are dropped (they carry no distance)."""
    sd = X.std(0)
    keep = sd > 1e-12
    return (X[:, keep] - X[:, keep].mean(0)) / sd[keep]


def silhouette(Z: np.ndarray, labels: np.ndarray, metric: str) -> float:
    """sklearn's silhouette; NaN where it is undefined (fewer than 2 labels, or every point its own label)."""
    from sklearn.metrics import silhouette_score

    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= len(Z) - 1:
        return float("nan")
    return float(silhouette_score(Z, labels, metric=metric))


def knn1(Z: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy (cosine): how often a clip's closest other clip shares its class."""
    from sklearn.metrics.pairwise import cosine_distances

    if len(Z) < 2:
        return float("nan")
    d = cosine_distances(Z)
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(1)] == y).mean())


def same_fold_neighbours(Z: np.ndarray, fold: np.ndarray) -> float:
    """Share of clips whose nearest other clip (cosine) comes from the same fold, i.e. the same model."""
    from sklearn.metrics.pairwise import cosine_distances

    d = cosine_distances(Z)
    np.fill_diagonal(d, np.inf)
    return float((fold[d.argmin(1)] == fold).mean())


def score_space(s: RunSpace) -> dict:
    """One table row: separation of the representation (original space) and of the input (z-scored)."""
    Xz = zscore(s.X)
    return {
        "run": s.name, "model": s.model, "representation": s.source, "dims": s.Z.shape[1], "input_dims": Xz.shape[1],
        "n_clips": len(s.y), "n_classes": len(np.unique(s.y)),
        "silhouette_cosine": silhouette(s.Z, s.y, "cosine"), "silhouette_euclidean": silhouette(s.Z, s.y, "euclidean"),
        "input_silhouette_cosine": silhouette(Xz, s.y, "cosine"), "input_silhouette_euclidean": silhouette(Xz, s.y, "euclidean"),
        "knn1_accuracy": knn1(s.Z, s.y), "input_knn1_accuracy": knn1(Xz, s.y),
        "centroid_accuracy": s.ncm, "input_centroid_accuracy": s.input_ncm,
        "nn_same_fold": same_fold_neighbours(s.Z, s.fold),
        "nn_same_fold_chance": float(np.mean([(np.sum(s.fold == f) - 1) / max(len(s.fold) - 1, 1) for f in s.fold])),
        "oof_max_abs_diff": s.oof_diff, "seconds": round(s.seconds, 1),
    }


# ----------------------------------------------------------------------------- figure


def projections(s: RunSpace, perplexity: float, seed: int) -> dict[str, np.ndarray]:
    """2-D views: PCA of the z-scored input, PCA and t-SNE of the representation (and UMAP if installed)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(s.Z)
    views = {"input: PCA": PCA(2).fit_transform(zscore(s.X)), "representation: PCA": PCA(2).fit_transform(s.Z)}
    perp = float(min(perplexity, n - 1))  # sklearn needs perplexity < n_samples
    views[f"representation: t-SNE (perplexity {perp:.3g})"] = TSNE(2, perplexity=perp, init="pca", random_state=seed).fit_transform(s.Z)
    try:
        import umap  # optional: not a requirement of the workspace
    except ImportError:
        return views
    views["representation: UMAP"] = umap.UMAP(n_neighbors=min(15, n - 1), random_state=seed).fit_transform(s.Z)
    return views


def plot_spaces(spaces: list[RunSpace], path: Path, perplexity: float, seed: int) -> Path:
    """One row per run, one column per projection; colour = class, marker = fold (the model that embedded the clip)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = [projections(s, perplexity, seed) for s in spaces]
    ncol = max(len(v) for v in views)
    fig, axes = plt.subplots(len(spaces), ncol, figsize=(3.1 * ncol, 2.9 * len(spaces)), squeeze=False)
    for r, (s, v) in enumerate(zip(spaces, views)):
        cmap = plt.get_cmap("tab10" if len(s.classes) <= 10 else "tab20")
        for c, (title, P) in enumerate(v.items()):
            ax = axes[r, c]
            for j, f in enumerate(np.unique(s.fold)):
                m = s.fold == f
                ax.scatter(P[m, 0], P[m, 1], s=14, c=[cmap(i % cmap.N) for i in s.y[m]], marker=MARKERS[j % len(MARKERS)], linewidths=0)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"{s.name}\n({s.model})", fontsize=8)
        for c in range(len(v), ncol):
            axes[r, c].axis("off")
        handles = [plt.Line2D([], [], marker="o", ms=4, ls="", color=cmap(i % cmap.N), label=c) for i, c in enumerate(s.classes)]
        axes[r, -1].legend(handles=handles, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle("colour = class, marker = fold (OOF clips, each embedded by its own fold's model)", fontsize=8)
    save_figure(path, fig)
    return path
