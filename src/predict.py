"""Predict audio files with a finished run: ``python -m src.predict RUN FILE_OR_FOLDER... [--out PATH.csv] [--timeline]``.

Any wav/mp3/flac/ogg/au file (any rate, stereo, any length; folders searched recursively) goes through the
run's own recipe (``src.stream``: the feature cache's extractor, streamed in chunks so hours of audio need the
memory of one chunk) and normalisation (each fold checkpoint holds its fold's statistics). Every fold's model
predicts; segments -> clip with the run's ``aggregate``, then the folds are averaged, exactly as the run's
``test.npy`` was made. An ensemble run (``weights.json``, ``src.ensemble``) predicts with every member and
combines them as it was fitted. Vector runs get the clip vectors of their ``[features] vector``, computed
from the same frames as the cache's.

Writes ``<workdir>/predictions/<run_id>.csv`` (``path``, a probability column per class or a column per
target, ``prediction``). Unreadable files are named and skipped; the command then exits with status 2
after writing the others. ``--timeline`` also predicts every window of each file: a per-window CSV
(``file, start_s, end_s, partial, <classes>, top, top_smoothed``) and one PNG per file.

Timeline windows default to the run's own segment length and hop (the cache's segments): the windows
the model was trained and validated on. Other ``--window`` lengths are fed as they are to networks that
pool over time (out of their training distribution when much shorter); a network with a fixed input
size (``cnn_seed``) refuses them with the fix. Kept free of training code (no src.train / src.optim /
src.tune import): the Kaggle inference kernel runs it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import cli
from .artifacts import read_json, setup_logging, stable_hash, write_csv
from .audio import AudioError
from .config import AUDIO_EXTENSIONS, WorkspaceConfig
from .errors import CheckpointError, ConfigError, DataError, EnsembleError, RunError
from .inference import resolve_device
from .multilabel import JOIN
from .runs import RunArtifacts, load_run, resolve_run
from .stream import Source, Window, Windows, make_source

log = logging.getLogger(__name__)
CHUNK_SECONDS = 20.0  # audio per streamed chunk: memory is about this much audio's spectrogram, whatever the file's length
BATCH_SIZE = 8  # windows per forward pass of a spectrogram network (its activations are most of the memory of a chunk)
TOP_TAGS = 8  # tags drawn in the --tags panel
MULTILABEL_THRESHOLD = 0.5  # a multilabel clip table lists the classes at or above this probability


# ----------------------------------------------------------------------------- the run's models


@dataclass
class Leaf:
    """One trained run: its fold models, what they take, and how their segments become a clip."""

    key: str  # the run folder, resolved (one run may be a member of two ensembles)
    name: str
    cfg: WorkspaceConfig
    model: str
    input: str  # "spec" | "vector"
    recipe: str  # spec runs: the spectrogram recipe ("" for vector runs)
    vector: list[str]  # vector runs: [features] vector of the run's workspace
    folds: list[Callable[[np.ndarray], np.ndarray]]  # items -> probabilities (or target values), one per fold
    how: str  # segment -> clip aggregation
    normalise: bool  # renormalise max/logmean aggregates (single-label probabilities only)
    shape: tuple[int, int] | None  # spec runs: (features, frames) the folds were trained on
    networks: list[str]  # pretrained taggers behind the run's inputs (for --tags)


@dataclass
class Ensemble:
    """An ensemble run: its members and the combination it was fitted with (src.ensemble)."""

    name: str
    members: list[Leaf | Ensemble]
    method: str
    weights: np.ndarray | None
    task: str = "classification"  # multilabel: combined per class, never renormalised across classes


@dataclass
class Predictor:
    name: str
    root: Path
    labels: list[str]  # classes, or targets of a regression run
    task: str  # classification | multilabel | regression
    tree: Leaf | Ensemble
    leaves: list[Leaf]

    @property
    def classification(self) -> bool:
        """One probability per class (single- or multi-label): tables get a top class, plots class rows."""
        return self.task != "regression"


def load_predictor(run: str | Path, workdir: str | Path = ".", device: str = "cpu", batch_size: int = BATCH_SIZE,
                   onnx: bool = False) -> Predictor:
    """A finished run (or ensemble) with every fold model loaded; refuses unfinished runs and missing checkpoints.
    ``batch_size``: windows per forward pass of spectrogram networks (not a training setting: results do not depend on it).
    ``onnx``: torch folds run their exported ``fold<k>.onnx`` with onnxruntime (``src.export``) on the CPU."""
    art = load_run(run, workdir)
    tree = _load_node(art, Path(workdir), resolve_device(device), batch_size, onnx)
    leaves = list({leaf.key: leaf for leaf in _leaves(tree)}.values())
    task = art.config.get("task", "classification")
    labels = list(art.config.get("classes") or []) if task != "regression" else list(art.config.get("targets") or [])
    return Predictor(art.name, art.root, labels, task, tree, leaves)


def _leaves(node: Leaf | Ensemble) -> list[Leaf]:
    return [node] if isinstance(node, Leaf) else [leaf for m in node.members for leaf in _leaves(m)]


def _load_node(art: RunArtifacts, workdir: Path, device: torch.device, batch_size: int = BATCH_SIZE, onnx: bool = False) -> Leaf | Ensemble:
    if not (art.root / "weights.json").is_file():
        return _load_leaf(art, device, batch_size, onnx)
    from .ensemble import COMBINERS

    w = read_json(art.root / "weights.json")
    names = [Path(m).name for m in art.config.get("members", [])]
    method = str(w.get("method", ""))
    if method.startswith("stack"):
        raise EnsembleError(f"ensemble {art.name} was fitted by stacking ({method}): its meta-model is not saved in "
                            f"{art.root / 'weights.json'}, so new files cannot be combined as it was fitted",
                            f"re-fit it with python -m src.ensemble {' '.join(names)} --method hill (or mean), or predict with a member")
    if method not in (*COMBINERS, "hill"):
        raise EnsembleError(f"ensemble {art.name}: unknown method {method!r} in weights.json", "re-fit it with python -m src.ensemble")
    members = [load_run(m if (Path(m) / "config.json").is_file() else Path(m).name, workdir) for m in art.config.get("members", [])]
    weights = np.array([w["weights"][m.name] for m in members], dtype=np.float64) if method == "hill" else None
    return Ensemble(art.name, [_load_node(m, workdir, device, batch_size, onnx) for m in members], method, weights,
                    art.config.get("task", "classification"))


def workspace_config(ws: dict) -> WorkspaceConfig:
    """The run's workspace config as its config.json recorded it; a record this version cannot read is a RunError."""
    from pydantic import ValidationError

    try:
        return WorkspaceConfig.from_dict(ws)
    except (KeyError, TypeError, ValidationError) as exc:
        raise RunError(f"the run's recorded workspace config cannot be read by this version ({type(exc).__name__}: {exc})",
                       "re-train the run with this version of the workspace") from None


def _load_leaf(art: RunArtifacts, device: torch.device, batch_size: int = BATCH_SIZE, onnx: bool = False) -> Leaf:
    """The fold models of a trained run (torch ``fold<k>.pt`` or scikit-learn ``fold<k>.joblib``)."""
    from .features import run_recipe
    from .models import get_spec
    from .settings import FIELDS, make_train_config

    ws = art.config.get("workspace") or {}
    kind = ws.get("data", {}).get("kind")
    if kind != "audio":
        raise RunError(f"run {art.name} was trained on {kind} data: src.predict predicts audio files",
                       "predict with a run trained on an audio competition ([data] kind = 'audio')")
    cfg = workspace_config(ws)
    train = {k: v for k, v in art.config["train"].items() if k in FIELDS}
    tc = make_train_config({**train, "batch_size": batch_size}, f"run {art.name} config.json [train]")
    spec, task = get_spec(tc.model), art.config.get("task", "classification")
    folds = [int(k) for k in art.metrics.get("folds_done") or art.metrics.get("folds", {})]
    if not folds:
        raise RunError(f"run {art.name} has no finished folds in metrics.json", f"train it: python -m src.train ... --run-id {art.name}")
    fns, metas = [], []
    for k in folds:
        fn, meta = _load_fold(art.root, k, spec.kind, tc, device, task, len(art.config.get("classes") or art.config.get("targets")), onnx)
        fns.append(fn)
        metas.append(meta)
    recipe = (metas[0].get("recipe") or run_recipe(spec.recipe, tc)) if spec.input == "spec" else ""
    vector = list(cfg.features.vector) if spec.input == "vector" else []
    return Leaf(str(art.root.resolve()), art.name, cfg, tc.model, spec.input, recipe, vector, fns,
                tc.aggregate if task != "regression" else "mean", task == "classification",
                tuple(metas[0]["input_shape"]) if spec.input == "spec" else None,
                _networks(spec, vector))


def _load_fold(root: Path, k: int, kind: str, tc, device: torch.device, task: str, n_out: int, onnx: bool = False):
    """(items -> predictions, checkpoint metadata) of fold k; ``onnx``: a torch fold runs its ``fold<k>.onnx`` (scikit-learn folds as they are)."""
    from .inference import decode, load_fold_model, predict

    if kind == "sklearn":
        import joblib

        from .heads import head_predict

        path = root / f"fold{k}.joblib"
        if not path.is_file():
            raise CheckpointError(f"run {root.name} has no checkpoint {path.name} (fold {k} is listed as done)",
                                  "re-train the fold (python -m src.train ... --run-id), or copy the whole run folder")
        blob = joblib.load(path)
        return (lambda X, est=blob["estimator"]: head_predict(est, X, n_out, task == "classification")), blob
    model, meta = load_fold_model(root / f"fold{k}.pt", device)
    if onnx:
        from .export import ort_fold_model

        ort, cpu = ort_fold_model(root / f"fold{k}.pt", model), torch.device("cpu")
        return (lambda X, m=ort: decode(m, predict(m, X, tc, cpu), task)), meta
    return (lambda X, m=model: decode(m, predict(m, X, tc, device), task)), meta


def _networks(spec, vector: list[str]) -> list[str]:
    """The pretrained taggers behind a run: a fine-tuned musicnn's own network, or those of its musicnn_* vectors."""
    from .embeddings import VECTOR_FEATURES

    own = [spec.builder.args[0]] if spec.recipe == "musicnn" else []  # src.models registers partial(create_musicnn, network)
    return list(dict.fromkeys(own + [VECTOR_FEATURES[v][0] for v in vector if v in VECTOR_FEATURES]))


def combine(node: Leaf | Ensemble, mats: dict[str, np.ndarray]) -> np.ndarray:
    """Members' (n, C) predictions combined as the ensemble was fitted; a leaf's own predictions as they are."""
    from .ensemble import COMBINERS, mean_probs

    if isinstance(node, Leaf):
        return mats[node.key]
    parts = [combine(m, mats) for m in node.members]
    if node.method == "rank" and len(parts[0]) < 10:
        log.warning("ensemble %s ranks each class over the %d rows predicted together: with few rows the ranks say little",
                    node.name, len(parts[0]))
    if node.method == "hill":
        return mean_probs(parts, node.weights, task=node.task)
    return COMBINERS[node.method](parts, task=node.task)


# ----------------------------------------------------------------------------- what every file needs


@dataclass
class Plan:
    """Per source (a recipe with its audio settings): the runs and clip vectors fed from its frames."""

    sources: dict[str, Source] = field(default_factory=dict)
    spec: dict[str, list[Leaf]] = field(default_factory=dict)  # source -> spec runs
    stats: dict[str, list[str]] = field(default_factory=dict)  # source -> frame statistics (mfcc, chroma)
    embed: dict[str, list[str]] = field(default_factory=dict)  # source -> networks whose embeddings are vectors
    tags: dict[str, list[str]] = field(default_factory=dict)  # source -> networks tagging the timeline
    leaf_source: dict[str, str] = field(default_factory=dict)  # spec run -> source
    vector_source: dict[str, dict[str, str]] = field(default_factory=dict)  # vector run -> {vector name: source}
    nets: dict[str, object] = field(default_factory=dict)  # loaded taggers


def _source(plan: Plan, cfg: WorkspaceConfig, recipe: str) -> str:
    from .features import recipe_params

    key = f"{recipe}-{stable_hash(recipe_params(cfg, recipe))}"
    if key not in plan.sources:
        plan.sources[key] = make_source(cfg, recipe)
        for d in (plan.spec, plan.stats, plan.embed, plan.tags):
            d[key] = []
    return key


def make_plan(pred: Predictor, workdir: Path, tags: bool = False) -> Plan:
    """Which sources every file goes through, and what each one feeds (runs, clip vectors, taggers)."""
    from .embeddings import VECTOR_FEATURES, load_network

    plan = Plan()
    for leaf in pred.leaves:
        if leaf.input == "spec":
            plan.leaf_source[leaf.key] = key = _source(plan, leaf.cfg, leaf.recipe)
            plan.spec[key].append(leaf)
        for name in leaf.vector:
            key = _source(plan, leaf.cfg, "musicnn" if name in VECTOR_FEATURES else "logmel")
            plan.vector_source.setdefault(leaf.key, {})[name] = key
            what, item = (plan.embed, VECTOR_FEATURES[name][0]) if name in VECTOR_FEATURES else (plan.stats, name.split("_")[0])
            what[key] += [item] if item not in what[key] else []
    if tags:
        leaf = next((lf for lf in pred.leaves if lf.networks), None)
        if leaf is None:
            raise ConfigError(f"run {pred.name} has no pretrained tagger for --tags: its model(s) {sorted({lf.model for lf in pred.leaves})} "
                              "take no musicnn input", "use a run of musicnn_msd / musicnn_mtt (fine-tuned), or of a vector model "
                              "on musicnn_* embeddings ([features] vector); or leave --tags out")
        plan.tags[_source(plan, leaf.cfg, "musicnn")].append(leaf.networks[0])
    for net in {n for d in (plan.embed, plan.tags) for names in d.values() for n in names}:
        plan.nets[net] = load_network(net, workdir)
    return plan


# ----------------------------------------------------------------------------- one file through one source


@dataclass
class SourceResult:
    """What one source computed for one file: per spec run and vector part, the clip's and each window's."""

    spec_clip: dict[str, np.ndarray] = field(default_factory=dict)  # run -> (C,)
    spec_win: dict[str, list[np.ndarray]] = field(default_factory=dict)  # run -> [(n, C)] per window batch
    parts_clip: dict[str, np.ndarray] = field(default_factory=dict)  # vector part -> (D,)
    parts_win: dict[str, list[np.ndarray]] = field(default_factory=dict)  # vector part -> [(D,)] per window
    tags: dict[str, list[np.ndarray]] = field(default_factory=dict)  # network -> [(50,)] per window
    starts: list[int] = field(default_factory=list)
    partial: list[bool] = field(default_factory=list)
    frames: int = 0  # frames of the whole file
    length: int = 0  # timeline window length in frames


class Scan:
    """One file through one source: the cache's segments and the timeline's windows cut from each chunk of frames,
    and every consumer fed as the chunks arrive (memory: one chunk, whatever the file's length)."""

    def __init__(self, plan: Plan, key: str, window: tuple[int, int] | None):
        self.plan, self.key, self.src, self.window = plan, key, plan.sources[key], window
        self.spec, self.stats = plan.spec[key], plan.stats[key]
        self.embed, self.tag_nets = plan.embed[key], plan.tags[key]

    def run(self, path: str, chunk_frames: int) -> SourceResult:
        self.r = SourceResult()
        self.fold_out = {leaf.key: [[] for _ in leaf.folds] for leaf in self.spec}
        self.net_out: dict[str, list[dict]] = {n: [] for n in self.embed}
        self.sums = {s: [0.0, 0.0, 0] for s in self.stats}
        clip = Windows(self.src.seg, self.src.seg_hop, keep_partial=False)
        tl = Windows(*self.window, keep_partial=True) if self.window else None
        self.r.length = self.window[0] if self.window else 0
        for chunk in self.src.chunks(path, chunk_frames):
            self.r.frames += next(iter(chunk.values())).shape[-1]
            self._accumulate(chunk)
            self._clip(clip.feed(chunk))
            if tl is not None:
                self._timeline(tl.feed(chunk))
        self._clip(clip.finish())
        if tl is not None:
            self._timeline(tl.finish())
        return self._finish()

    def _accumulate(self, chunk: dict[str, np.ndarray]) -> None:
        """Running sums for the clip's frame statistics (mean and std over every frame of the file)."""
        for s in self.stats:
            m = chunk[s].astype(np.float64)  # (n_mfcc or 12, t)
            acc = self.sums[s]
            acc[0], acc[1], acc[2] = acc[0] + m.sum(1), acc[1] + (m ** 2).sum(1), acc[2] + m.shape[1]

    def _clip(self, windows: list[Window]) -> None:
        """The cache's segments: every spec run's folds predict them; taggers embed them (clip vectors)."""
        if not windows or not (self.spec or self.embed):
            return
        X = self.src.items(windows, self.src.seg)  # (n, features, seg)
        for leaf in self.spec:
            for k, fn in enumerate(leaf.folds):
                self.fold_out[leaf.key][k].append(fn(X))
        for net in self.embed:
            self.net_out[net].append(network_outputs(self.plan.nets[net], X))

    def _timeline(self, windows: list[Window]) -> None:
        if not windows:
            return
        self.r.starts += [w.start for w in windows]
        self.r.partial += [w.partial for w in windows]
        length = self.window[0]
        if self.spec:
            X = self.src.items(windows, length)  # (n, features, length): partial windows padded by the recipe's rule
            for leaf in self.spec:
                self.r.spec_win.setdefault(leaf.key, []).append(np.mean([fn(X) for fn in leaf.folds], axis=0))
        for w in windows:
            for s in self.stats:
                m = w.frames[s].astype(np.float64)
                self.r.parts_win.setdefault(f"{s}_stats", []).append(np.concatenate([m.mean(1), m.std(1)]).astype(np.float32))
        nets = list(dict.fromkeys(self.embed + self.tag_nets))
        if nets:  # each window's own patches (the window as a clip), all windows in one batch
            patches = [self.src.ex.segments(w.frames["spec"]) for w in windows]  # [(n_i, 96, 187)]
            bounds = np.cumsum([0] + [len(p) for p in patches])
            for net in nets:
                out = network_outputs(self.plan.nets[net], np.concatenate(patches))
                for i in range(len(windows)):
                    one = {k: v[bounds[i]:bounds[i + 1]] for k, v in out.items()}
                    for name, vec in _embedding_parts(net, [one]).items():
                        self.r.parts_win.setdefault(name, []).append(vec)
                    self.r.tags.setdefault(net, []).append(one["tags"].mean(0))

    def _finish(self) -> SourceResult:
        for leaf in self.spec:
            self.r.spec_clip[leaf.key] = clip_prediction([np.concatenate(o) for o in self.fold_out[leaf.key]], leaf.how, leaf.normalise)
        for s, (total, sq, n) in self.sums.items():
            mean = total / n
            self.r.parts_clip[f"{s}_stats"] = np.concatenate([mean, np.sqrt(np.maximum(sq / n - mean ** 2, 0))]).astype(np.float32)
        for net, outs in self.net_out.items():
            self.r.parts_clip.update(_embedding_parts(net, outs))
        return self.r


def network_outputs(net: object, X: np.ndarray) -> dict[str, np.ndarray]:
    from .embeddings import network_outputs as outputs

    return outputs(net, X)


def _embedding_parts(network: str, outs: list[dict]) -> dict[str, np.ndarray]:
    """Every ``[features] vector`` entry of ``network`` from its patches' outputs: the cache's clip statistics."""
    from .embeddings import VECTOR_FEATURES, segment_stats

    out = {}
    for name, (net, output, stats) in VECTOR_FEATURES.items():
        if net == network:
            values = np.concatenate([o[output] for o in outs])
            out[name] = segment_stats(values, np.zeros(len(values), np.int64), 1, stats)[0]
    return out


def clip_prediction(per_fold: list[np.ndarray], how: str, normalise: bool = True) -> np.ndarray:
    """(C,) clip prediction from each fold's (n_items, C) item predictions: per fold items -> clip with the run's
    ``aggregate``, then the mean over folds (how the run's ``test.npy`` was made)."""
    from .inference import aggregate

    n_out = per_fold[0].shape[1]
    return np.mean([aggregate(p, np.zeros(len(p), np.int64), 1, np.zeros(n_out), how, normalise)[0] for p in per_fold], axis=0)


# ----------------------------------------------------------------------------- one file, every source


@dataclass
class Timeline:
    """Every window of one file: its time span, whether it was padded, each run's predictions and the tags."""

    start_s: np.ndarray  # (n,)
    end_s: np.ndarray  # (n,) the window's last frame, at most the file's end
    partial: np.ndarray  # (n,) bool: the window reaches past the end (padded as the recipe pads short clips)
    runs: dict[str, np.ndarray]  # run -> (n, C)
    tags: dict[str, np.ndarray]  # network -> (n, 50)


@dataclass
class FileResult:
    clip: dict[str, np.ndarray]  # run -> (C,)
    timeline: Timeline | None = None


def predict_file(pred: Predictor, plan: Plan, path: str, window_s: tuple[float, float] | None = None,
                 chunk_seconds: float = CHUNK_SECONDS) -> FileResult:
    """Every run's clip prediction of one file (and its timeline): each source scans the file once."""
    results = {}
    for key, src in plan.sources.items():
        window = (max(1, round(window_s[0] * src.fps)), max(1, round(window_s[1] * src.fps))) if window_s else None
        results[key] = Scan(plan, key, window).run(str(path), max(1, round(chunk_seconds * src.fps)))
    clip = {leaf: results[key].spec_clip[leaf] for leaf, key in plan.leaf_source.items()}
    for leaf in pred.leaves:
        if leaf.input == "vector":
            x = np.concatenate([results[key].parts_clip[name] for name, key in plan.vector_source[leaf.key].items()])[None]
            clip[leaf.key] = clip_prediction([fn(x) for fn in leaf.folds], leaf.how, leaf.normalise)
    return FileResult(clip, _timeline(pred, plan, results) if window_s else None)


def _timeline(pred: Predictor, plan: Plan, results: dict[str, SourceResult]) -> Timeline:
    """Windows of every source side by side (their counts can differ by one at the end where frame rates differ)."""
    n = min(len(r.starts) for r in results.values())
    first_key = next(iter(results))
    first, fps = results[first_key], plan.sources[first_key].fps
    starts = np.asarray(first.starts[:n])
    partial = np.any([r.partial[:n] for r in results.values()], axis=0)
    runs = {leaf: np.concatenate(results[key].spec_win[leaf])[:n] for leaf, key in plan.leaf_source.items()}
    for leaf in pred.leaves:
        if leaf.input == "vector":
            X = np.concatenate([np.stack(results[key].parts_win[name][:n]) for name, key in plan.vector_source[leaf.key].items()], axis=1)
            runs[leaf.key] = np.mean([fn(X) for fn in leaf.folds], axis=0)  # (n, C): one window = one item
    tags = {net: np.stack(r.tags[net][:n]) for key, r in results.items() for net in plan.tags[key]}
    return Timeline(starts / fps, np.minimum(starts + first.length, first.frames) / fps, partial, runs, tags)


@dataclass
class Predictions:
    """Clip predictions of the files that could be predicted, their timelines, and the files that could not."""

    paths: list[str]
    clip: np.ndarray  # (n_ok, C) combined over the ensemble's members
    timelines: list[tuple[Timeline, np.ndarray]]  # per file: (its windows, (n_windows, C) combined)
    errors: list[tuple[str, str]]  # (path, why)


def predict_files(pred: Predictor, plan: Plan, paths: Sequence[str | Path], window_s: tuple[float, float] | None = None,
                  chunk_seconds: float = CHUNK_SECONDS) -> Predictions:
    """Predict every file; an unreadable one is named and skipped, the others are still predicted."""
    from tqdm.auto import tqdm

    done, results, errors = [], [], []
    for path in tqdm([str(p) for p in paths], desc=f"predict {pred.name}", unit="file"):
        try:
            res = predict_file(pred, plan, path, window_s, chunk_seconds)
        except AudioError as exc:
            log.warning("%s: %s", path, exc.problem)
            errors.append((path, exc.problem))
            continue
        done.append(path)
        results.append(res)
    mats = {leaf.key: np.stack([r.clip[leaf.key] for r in results]) if results else np.zeros((0, len(pred.labels)))
            for leaf in pred.leaves}
    clip = combine(pred.tree, mats).astype(np.float32)
    timelines = [(r.timeline, combine(pred.tree, r.timeline.runs)) for r in results if r.timeline is not None]
    return Predictions(done, clip, timelines, errors)


# ----------------------------------------------------------------------------- inputs and outputs


def find_audio(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(file, name for its outputs) of every file given, and of every audio file under every folder given (recursively)."""
    out: list[tuple[Path, str]] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise DataError(f"{p}: no audio files ({' '.join(AUDIO_EXTENSIONS)}) in this folder or below",
                                "pass a folder that holds audio files, or the files themselves")
            out += [(f, f.relative_to(p).with_suffix("").as_posix()) for f in found]
        elif p.exists():
            out.append((p, p.stem))
        else:
            raise DataError(f"{p}: no such file or folder", "check the path (files and folders are searched as given)")
    names: dict[str, int] = {}
    for i, (f, name) in enumerate(out):  # unique output names (two folders may hold a 0.wav each)
        names[name] = names.get(name, 0) + 1
        out[i] = (f, name.replace("/", "__") + (f"_{names[name]}" if names[name] > 1 else ""))
    return out


def clip_table(pred: Predictor, paths: list[str], probs: np.ndarray):
    """``path``, a column per class (probabilities) or per target (values), and ``prediction`` (the top class;
    multilabel: the classes with probability >= 0.5)."""
    import pandas as pd

    df = pd.DataFrame(probs, columns=pred.labels)
    df.insert(0, "path", paths)
    if pred.task == "multilabel":  # every class at or above 0.5 (independent sigmoid probabilities), "|"-joined
        names = np.asarray(pred.labels, dtype=object)
        df["prediction"] = [JOIN.join(names[row >= MULTILABEL_THRESHOLD]) for row in probs]
    elif pred.classification:
        df["prediction"] = [pred.labels[i] for i in probs.argmax(1)] if len(df) else []
    return df


def smooth(probs: np.ndarray, n: int) -> np.ndarray:
    """Median over ``n`` consecutive windows of each class probability (``--smooth``; 1: unchanged)."""
    from scipy.ndimage import median_filter

    return probs if n <= 1 or not len(probs) else median_filter(probs, size=(n, 1), mode="nearest")


def timeline_table(pred: Predictor, path: str, tl: Timeline, probs: np.ndarray, n_smooth: int):
    """One row per window: ``file, start_s, end_s, partial``, the predictions, ``top`` and ``top_smoothed``."""
    import pandas as pd

    df = pd.DataFrame(probs, columns=pred.labels)
    for i, (col, val) in enumerate((("file", path), ("start_s", tl.start_s.round(3)), ("end_s", tl.end_s.round(3)), ("partial", tl.partial))):
        df.insert(i, col, val)
    if pred.classification:
        df["top"] = [pred.labels[i] for i in probs.argmax(1)]
        df["top_smoothed"] = [pred.labels[i] for i in smooth(probs, n_smooth).argmax(1)]
    return df


def verdict(pred: Predictor, probs: np.ndarray) -> str:
    """The clip-level prediction in words: the top class and its probability, or the target values."""
    if pred.classification:
        return f"{pred.labels[int(probs.argmax())]} ({probs.max():.2f})"
    return ", ".join(f"{t} = {v:.4g}" for t, v in zip(pred.labels, probs))


def plot_timeline(path: Path, pred: Predictor, name: str, tl: Timeline, probs: np.ndarray, clip: np.ndarray, n_smooth: int) -> None:
    """Classes over time (probability as colour, the top class of each window marked, the smoothed top as a line),
    the clip-level verdict in the title; below, the pretrained tagger's top tags over time when asked (``--tags``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .artifacts import save_figure

    tags = next(iter(tl.tags.items()), None)
    rows = [len(pred.labels)] + ([TOP_TAGS] if tags else [])
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 1.4 + 0.3 * sum(rows)), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": rows})
    edges = np.append(tl.start_s, tl.end_s[-1])  # window i drawn from its start to the next one's
    mid = (edges[:-1] + edges[1:]) / 2
    ax = axes[0, 0]
    if pred.classification:
        mesh = ax.pcolormesh(edges, np.arange(len(pred.labels) + 1) - 0.5, probs.T, cmap="magma", vmin=0, vmax=1)
        top = probs.argmax(1)
        ax.scatter(mid[~tl.partial], top[~tl.partial], s=14, c="cyan", label="top class")
        ax.scatter(mid[tl.partial], top[tl.partial], s=22, facecolors="none", edgecolors="cyan", label="top class (partial window)")
        if n_smooth > 1:
            ax.step(mid, smooth(probs, n_smooth).argmax(1), where="mid", color="lime", lw=1, label=f"top, median of {n_smooth}")
        ax.set_yticks(range(len(pred.labels)), pred.labels)
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=7, frameon=False)
        fig.colorbar(mesh, ax=ax, label="probability", pad=0.01)
    else:
        for j, t in enumerate(pred.labels):
            ax.plot(mid, probs[:, j], label=t)
        ax.legend(fontsize=7)
    ax.set_title(f"{name}: {verdict(pred, clip)} (clip level)\nrun {pred.name}", fontsize=10, loc="left")
    if tags:
        _tag_panel(axes[1, 0], fig, edges, *tags)
    axes[-1, 0].set_xlabel("time (s)")
    save_figure(path, fig)


def _tag_panel(ax, fig, edges: np.ndarray, network: str, probs: np.ndarray) -> None:
    """The ``TOP_TAGS`` tags of ``network`` with the highest mean over the file, over time."""
    from .musicnn import tags as tag_names

    names = tag_names(network)
    best = np.argsort(-probs.mean(0))[:TOP_TAGS]
    mesh = ax.pcolormesh(edges, np.arange(len(best) + 1) - 0.5, probs[:, best].T, cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(best)), [names[i] for i in best])
    ax.set_title(f"{network} tags (pretrained tagger, top {len(best)} by mean)", fontsize=9)
    fig.colorbar(mesh, ax=ax, label="tag probability", pad=0.01)


# ----------------------------------------------------------------------------- the command


def default_window(pred: Predictor, plan: Plan) -> tuple[float, float]:
    """The run's own segment length and hop in seconds: the windows its model was trained and validated on
    (a vector run's: its config's [audio] segment_seconds / segment_hop_seconds)."""
    for leaf in pred.leaves:
        if leaf.input == "spec":
            src = plan.sources[plan.leaf_source[leaf.key]]
            return src.seg / src.fps, src.seg_hop / src.fps
    a = pred.leaves[0].cfg.audio
    return a.segment_seconds, a.segment_hop_seconds


def check_window(pred: Predictor, plan: Plan, window_s: tuple[float, float]) -> None:
    """Every source must have time frames, and every spec network must take windows of this length: a network with a
    fixed input size (cnn_seed's first dense layer) refuses any other length, with the fix."""
    for key, src in plan.sources.items():
        if not src.timed:
            raise ConfigError(f"recipe {key.rsplit('-', 1)[0]} has a frame per beat, not per time step: no timeline in seconds",
                              "predict clips without --timeline, or use a run on a time recipe (logmel, chroma, musicnn)")
    for leaf in pred.leaves:
        if leaf.input != "spec":
            log.warning("run %s (%s) was trained on statistics of whole clips; its timeline feeds it statistics of %g-s windows, "
                        "which differ (a window holding one musicnn patch has a zero std half): read its per-window "
                        "probabilities with care, or pass a longer --window", leaf.name, leaf.model, window_s[0])
            continue
        frames = max(1, round(window_s[0] * plan.sources[plan.leaf_source[leaf.key]].fps))
        if frames == leaf.shape[1]:
            continue
        try:
            leaf.folds[0](np.zeros((1, leaf.shape[0], frames), np.float32))  # one dummy window: does the network take it?
        except RuntimeError as exc:
            fps = plan.sources[plan.leaf_source[leaf.key]].fps
            raise ConfigError(f"model {leaf.model} of run {leaf.name} takes windows of {leaf.shape[1]} frames ({leaf.shape[1] / fps:.3f} s) "
                              f"only, not {frames} (--window {window_s[0]:g}): {str(exc).splitlines()[0]}",
                              f"leave --window out (the run's segment length) or pass --window {leaf.shape[1] / fps:.3f}") from None


def check_args(args) -> None:
    """Timeline options need --timeline; lengths must be positive."""
    for flag, value in (("--window", args.window), ("--hop", args.hop), ("--tags", args.tags or None), ("--smooth", args.smooth)):
        if value is not None and not args.timeline:
            raise ConfigError(f"{flag} applies to timelines only", f"add --timeline, or leave {flag} out")
    for flag, value in (("--window", args.window), ("--hop", args.hop), ("--chunk-seconds", args.chunk_seconds), ("--batch-size", args.batch_size)):
        if value is not None and value <= 0:
            raise ConfigError(f"{flag} {value}: must be positive", f"pass a positive {flag} (see python -m src.predict --help)")
    if args.smooth is not None and args.smooth < 1:
        raise ConfigError(f"--smooth {args.smooth}: a median over fewer than 1 window", "pass --smooth 3 (or leave it out)")


def write_timelines(pred: Predictor, res: Predictions, names: dict[str, str], out: Path, n_smooth: int) -> Path:
    """The per-window CSV beside the clip CSV and a PNG per file in ``<out stem>_timeline/``; prints each verdict."""
    import pandas as pd

    folder = out.with_name(out.stem + "_timeline")
    tables = []
    for path, clip, (tl, probs) in zip(res.paths, res.clip, res.timelines):
        tables.append(timeline_table(pred, path, tl, probs, n_smooth))
        plot_timeline(folder / f"{names[path]}.png", pred, names[path], tl, probs, clip, n_smooth)
        print(f"{path}: {verdict(pred, clip)}  ({len(tl.start_s)} windows, {int(tl.partial.sum())} partial)")
    csv = out.with_name(out.stem + "_timeline.csv")
    empty = timeline_table(pred, "", _empty_timeline(), np.zeros((0, len(pred.labels))), 1)
    write_csv(csv, pd.concat(tables, ignore_index=True) if tables else empty)
    print(f"timeline: {csv} (per window) and {folder}/ (a PNG per file)")
    return csv


def _empty_timeline() -> Timeline:
    return Timeline(np.zeros(0), np.zeros(0), np.zeros(0, bool), {}, {})


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("predict", "Predict audio files or folders with a finished run or ensemble; --timeline: every window too.")
    ap.add_argument("run", help="run id (under <workdir>/runs) or run folder; an ensemble run predicts with every member")
    ap.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER",
                    help=f"audio files, or folders searched recursively for {' '.join(AUDIO_EXTENSIONS)}")
    ap.add_argument("--out", help="clip predictions CSV (default: <workdir>/predictions/<run_id>.csv)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the models run")
    ap.add_argument("--timeline", action="store_true", help="also predict every window: <out>_timeline.csv and a PNG per file")
    ap.add_argument("--window", type=float, help="timeline window in seconds (default: the run's segment length)")
    ap.add_argument("--hop", type=float, help="timeline hop in seconds (default: the run's segment hop; with --window: the window)")
    ap.add_argument("--smooth", type=int, help="median filter over N windows of each class probability; top_smoothed")
    ap.add_argument("--tags", action="store_true", help="draw the pretrained tagger's top tags over time (musicnn runs)")
    ap.add_argument("--chunk-seconds", type=float, default=CHUNK_SECONDS, help="audio per streamed chunk (bounds the memory)")
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="windows per forward pass of a spectrogram network (raise it on a GPU)")
    ap.add_argument("--onnx", action="store_true", help="run the exported fold<k>.onnx with onnxruntime on the CPU (python -m src.export RUN --onnx)")
    cli.add_common(ap, config=False)
    args = ap.parse_args(argv)
    setup_logging()
    check_args(args)
    t0 = time.perf_counter()
    pred = load_predictor(resolve_run(args.run, args.workdir), args.workdir, args.device, args.batch_size, args.onnx)
    files = find_audio(args.inputs)
    plan = make_plan(pred, Path(args.workdir), tags=args.tags)
    window = None
    if args.timeline:  # --window without --hop: windows side by side
        length, hop = (args.window, args.window) if args.window else default_window(pred, plan)
        window = (length, args.hop or hop)
        check_window(pred, plan, window)
    res = predict_files(pred, plan, [f for f, _ in files], window, args.chunk_seconds)
    out = Path(args.out) if args.out else Path(args.workdir) / "predictions" / f"{pred.name}.csv"
    write_csv(out, clip_table(pred, res.paths, res.clip))
    if args.timeline:
        write_timelines(pred, res, {str(f): name for f, name in files}, out, args.smooth or 1)
    print(f"{len(res.paths)} file(s) predicted with {pred.name} -> {out} ({time.perf_counter() - t0:.1f}s)")
    if res.errors:
        listing = "\n".join(f"  {p}: {why}" for p, why in res.errors)
        raise DataError(f"{len(res.errors)} file(s) could not be predicted:\n{listing}\n",
                        f"fix or re-encode them (e.g. ffmpeg -i FILE FILE.wav), or remove them; the other {len(res.paths)} are in {out}")


if __name__ == "__main__":
    cli.run_command(main)
