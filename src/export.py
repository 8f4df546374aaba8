"""Export a finished torch run's fold networks to ONNX: ``python -m src.export RUN --onnx [--opset N]``.

Why: code competitions (BirdCLEF and the like) give a fixed CPU budget for thousands of files; onnxruntime runs
our small spectrogram networks faster than eager PyTorch on CPU and needs no torch at all. Each ``fold<k>.pt``
(loaded with ``src.inference.load_fold_model``: the ``Wrapped`` module, so the fold's normalisation is inside
the graph) becomes ``fold<k>.onnx`` beside it, with a dynamic batch axis (and frame axis for spectrogram input, so
timeline windows of other lengths work where the torch network takes them), written atomically. After writing,
the ONNX model is run with onnxruntime on random input and compared with PyTorch (max abs diff of the raw
outputs); above ``TOLERANCE`` the export fails and the file is removed.

``python -m src.predict RUN FILES --onnx`` then runs the folds with onnxruntime (``ort_fold_model``): the same
batching, crops and TTA views as ``src.inference.predict`` (it calls the session through a module).

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used: it needs only the ``onnx``
package (the dynamo exporter needs ``onnxscript`` too), and exports mlp, cnn, cnn_seed, crnn and lstm.
Its highest opset (20 in torch 2.11) is the default.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import cli
from .artifacts import atomic_path, setup_logging
from .errors import CheckpointError, ConfigError, EnsembleError, RunError

log = logging.getLogger(__name__)
TOLERANCE = 1e-4  # max abs diff of raw outputs (logits), ONNX vs PyTorch, scaled by max(1, max |output|)
CHECK_BATCH = 5  # rows of the agreement check: not the export's batch of 2, so the dynamic batch axis is exercised


def _max_opset() -> int:
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_DEFAULT_OPSET))


def require_onnx() -> None:
    """onnx and onnxruntime are optional at import time (training never needs them); say how to get them."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not installed: ONNX export and --onnx prediction need them",
                          "pip install -r requirements.txt (pins onnx and onnxruntime)")


def fold_numbers(art) -> list[int]:
    """The run's finished folds, as ``src.predict`` reads them."""
    folds = [int(k) for k in art.metrics.get("folds_done") or art.metrics.get("folds", {})]
    if not folds:
        raise RunError(f"run {art.name} has no finished folds in metrics.json", f"train it: python -m src.train ... --run-id {art.name}")
    return folds


def check_exportable(art) -> None:
    """Ensembles and scikit-learn runs have no network to export: say what to do instead."""
    from .models import get_spec

    if (art.root / "weights.json").is_file():
        members = " ".join(Path(m).name for m in art.config.get("members", []))
        raise EnsembleError(f"run {art.name} is an ensemble: it has no network of its own to export",
                            f"export each member (python -m src.export MEMBER --onnx for each of: {members}); "
                            f"python -m src.predict {art.name} FILES --onnx then uses them")
    model = art.config.get("train", {}).get("model", "?")
    if get_spec(model).kind == "sklearn":
        raise RunError(f"run {art.name} is a scikit-learn model ({model}): only torch networks are exported to ONNX",
                       f"predict it as it is (python -m src.predict {art.name} FILES; with --onnx its sklearn folds run as they are)")


def random_input(model: nn.Module, meta: dict, n: int, seed: int = 0) -> torch.Tensor:
    """Input the fold's network sees as roughly standard normal: mean + std * N(0, 1) per feature."""
    shape = (n, *meta["input_shape"]) if meta.get("input_shape") else (n, int(meta["in_features"]))  # (B, n_mels, T) or (B, D)
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    return model.x_mean + model.x_std * z


def export_fold(pt: Path, out: Path, opset: int, tol: float = TOLERANCE) -> float:
    """``fold<k>.pt`` -> ``fold<k>.onnx`` (atomic); returns the max abs diff against PyTorch, refusing it above ``tol``."""
    from .inference import load_fold_model

    model, meta = load_fold_model(pt, "cpu")
    x = random_input(model, meta, 2)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning, UserWarning))  # legacy exporter's notices
        torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 2: "frames"} if x.ndim == 3 else {0: "batch"}, "y": {0: "batch"}})
        diff, scale = agreement(model, tmp, random_input(model, meta, CHECK_BATCH, seed=1))
        if diff > tol * scale:
            raise CheckpointError(f"{out.name}: ONNX outputs differ from PyTorch by {diff:.3g} (tolerance {tol:g} x {scale:.3g}); "
                                  "nothing written", "report it with the model name; predict without --onnx meanwhile")
    return diff


def agreement(model: nn.Module, path: Path, x: torch.Tensor) -> tuple[float, float]:
    """(max abs diff of outputs onnxruntime vs PyTorch, max(1, max |PyTorch output|)) on ``x``."""
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort_session(path, threads=1).run(None, {"x": x.numpy()})[0]
    return float(np.abs(got - ref).max()), float(max(1.0, np.abs(ref).max()))


def export_run(run: str | Path, workdir: str | Path = ".", opset: int | None = None, tol: float = TOLERANCE) -> list[Path]:
    """Every finished fold of a torch run -> ``fold<k>.onnx``; refuses ensembles, scikit-learn runs and bad opsets."""
    from tqdm import tqdm

    from .runs import load_run, resolve_run

    require_onnx()
    top = _max_opset()
    opset = opset or top
    if not 7 <= opset <= top:
        raise ConfigError(f"--opset {opset}: the installed exporter writes opsets 7..{top}", f"pass --opset {top} (or leave it out)")
    art = load_run(resolve_run(run, workdir), workdir)
    check_exportable(art)
    paths = []
    for k in tqdm(fold_numbers(art), desc=f"export {art.name}", unit="fold"):
        out = art.root / f"fold{k}.onnx"
        diff = export_fold(art.root / f"fold{k}.pt", out, opset, tol)
        log.info("%s: opset %d, max abs diff vs PyTorch %.3g", out, opset, diff)
        paths.append(out)
    return paths


# ----------------------------------------------------------------------------- running them


def ort_session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session; ``threads``: intra-op threads (default: torch's, so both use the same cores)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not spin while librosa computes features
    so.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtModule(nn.Module):
    """An onnxruntime session called like the torch module it was exported from, so ``src.inference.predict``
    (batches, crops, TTA views, decode) runs it unchanged."""

    def __init__(self, session, wrapped: nn.Module):
        super().__init__()
        self.session = session
        self.y_mean, self.y_std = wrapped.y_mean, wrapped.y_std  # decode() reads these for regression runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return torch.from_numpy(self.session.run(None, {"x": x.detach().cpu().numpy()})[0])  # (B, C)
        except Exception as exc:  # onnxruntime's errors are not RuntimeErrors; src.predict.check_window catches those
            raise RuntimeError(str(exc)) from exc


def ort_fold_model(pt: Path, wrapped: nn.Module, threads: int | None = None) -> OrtModule:
    """The exported ``fold<k>.onnx`` beside ``pt``; refuses a missing or stale one (older than its checkpoint)."""
    require_onnx()
    path = pt.with_suffix(".onnx")
    run = pt.parent.name
    if not path.is_file():
        raise CheckpointError(f"run {run} has no {path.name}: --onnx runs the exported fold networks",
                              f"export them: python -m src.export {run} --onnx (or predict without --onnx)")
    if path.stat().st_mtime < pt.stat().st_mtime:
        raise CheckpointError(f"{path} is older than {pt.name}: the checkpoint changed after the export",
                              f"re-export: python -m src.export {run} --onnx")
    return OrtModule(ort_session(path, threads), wrapped)


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("export", "Export a finished torch run's fold networks (normalisation included) to fold<k>.onnx.")
    ap.add_argument("run", help="run id (under <workdir>/runs) or run folder")
    ap.add_argument("--onnx", action="store_true", help="export to ONNX (the only format so far; required)")
    ap.add_argument("--opset", type=int, help=f"ONNX opset (default: the installed exporter's highest, {_max_opset()})")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE, help="max abs diff vs PyTorch, times max(1, max |output|)")
    cli.add_common(ap, config=False)
    args = ap.parse_args(argv)
    setup_logging()
    if not args.onnx:
        raise ConfigError("no export format given", f"add --onnx: python -m src.export {args.run} --onnx")
    paths = export_run(args.run, args.workdir, args.opset, args.tolerance)
    print(f"{len(paths)} fold(s) exported: {', '.join(str(p) for p in paths)}")


if __name__ == "__main__":
    cli.run_command(main)
