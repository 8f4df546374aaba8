"""Tuning studies as files: ``optuna_studies/<study>.json`` (the best trial and its provenance) and its reader.

``src.tune`` writes the export after every completed trial; ``src.train --params best`` reads it
through :func:`load_params`, which refuses parameters tuned for another model, on another fold
file or on other input settings. Kept apart from ``src.tune`` so that training does not import
the tuner.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import code_version, file_sha256, read_json, write_json
from .config import WorkspaceConfig, signature_diff
from .errors import TuneError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
STUDIES_DIR = "optuna_studies"


def studies_dir(workdir: str | Path) -> Path:
    return Path(workdir) / STUDIES_DIR


def finished(study: optuna.Study) -> int:
    """Trials that count towards ``--trials``: complete or pruned."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def export_best(study: optuna.Study, out: Path) -> dict[str, Any] | None:
    """Best trial + the study's provenance -> optuna_studies/<study>.json (what ``--params best`` reads)."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    meta = study.user_attrs
    doc = {
        "study": study.study_name, "model": meta.get("model"), "metric": meta.get("metric"),
        "direction": study.direction.name.lower(), "best_value": best.value, "best_trial": best.number,
        "params": best.params, "train_params": best.user_attrs.get("train_params", {}),
        "fold_scores": best.user_attrs.get("fold_scores", {}), "fold_metrics": best.user_attrs.get("fold_metrics", {}),
        "folds": meta.get("folds"), "fold_file": meta.get("fold_file"), "fold_sha256": meta.get("fold_sha256"),
        "workspace": meta.get("workspace"), "train_base": meta.get("train_base"),
        "code_version": best.user_attrs.get("code_version", meta.get("code_version")),
        "n_finished": finished(study), "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out, doc)
    return doc


def load_params(spec: str, cfg: WorkspaceConfig, fold_file: Path, model: str, workdir: str | Path = ".") -> dict[str, Any]:
    """Resolve ``--params best|PATH.json|PATH.db`` to the flat parameter dict of the best trial.

    ``best`` means ``<workdir>/optuna_studies/<model>.json`` (exported from ``<model>.db`` if only
    the study exists). Refuses parameters tuned for another model, on another fold file (hash) or
    on other data/audio/feature settings, because mixing them would silently change what the CV
    score means. Returns TrainConfig fields and model parameters in one dict (see ``apply_params``).
    """
    if not Path(fold_file).is_file():
        raise TuneError(f"--params {spec}: fold file {fold_file} missing", f"make it with python -m src.folds --config {cfg.path}")
    fold_sha256 = file_sha256(fold_file)
    sdir = studies_dir(workdir)
    path = sdir / f"{model}.json" if spec == "best" else Path(spec)
    if path.suffix == ".db" or (spec == "best" and not path.is_file() and (sdir / f"{model}.db").is_file()):
        db = path if path.suffix == ".db" else sdir / f"{model}.db"
        import optuna

        study = optuna.load_study(study_name=db.stem, storage=f"sqlite:///{db.resolve()}")
        path = db.with_suffix(".json")
        if export_best(study, path) is None:
            raise TuneError(f"{db}: study {db.stem!r} has no completed trial yet")
    if not path.is_file():
        raise TuneError(f"--params {spec}: {path} not found; tune first: python -m src.tune --config {cfg.path} --model {model}")
    doc = read_json(path)
    if doc.get("model") != model:
        raise TuneError(f"{path} holds parameters tuned for model {doc.get('model')!r}, not {model!r}")
    if doc.get("fold_sha256") != fold_sha256:
        raise TuneError(f"{path} was tuned on {doc.get('fold_file')} (sha256 {str(doc.get('fold_sha256'))[:12]}…), "
                        f"but the current fold file has sha256 {fold_sha256[:12]}…; re-tune on these folds or pass "
                        f"the matching --fold-file")
    diff = signature_diff(doc.get("workspace") or {}, cfg.to_dict())
    if diff:
        raise TuneError(f"{path} was tuned on other settings ({', '.join(diff)} differ from {cfg.path})", "re-tune on these settings")
    if doc.get("code_version") != code_version():
        log.warning("%s was tuned at code version %s; now %s", path, doc.get("code_version"), code_version())
    return dict(doc["train_params"])
