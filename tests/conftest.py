"""Shared pytest fixtures; the builders themselves live in ``tests/fixtures.py``.

Session-scoped fixtures are built once and must be treated as read-only
(copy them, or use the function-scoped factories, before changing files):

* ``tiny_audio``       Comp: manifest-layout audio competition (3 classes x 4 clips, 4 test clips, wav, 8 kHz, 0.5 s)
* ``tiny_audio_prep``  (Comp, Prepared, workdir): ``tiny_audio`` after ``prepare`` (feature cache built in workdir)
* ``tabular``          Comp: tabular CSV with one same-label and one cross-label duplicate pair (function scope)
* ``arrays``           Comp: arrays layout with mfccs + melgrams, holdout split ``valid``, unlabelled ``test``
* ``workdir``          a fresh folder for cache/, folds/, runs/ (function scope)
* ``tab_runs``         (Comp, cfg, Prepared, workdir, fold file, runs): tabular MLP runs a/b (seed 3), c (seed 4, fold 0)
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fixtures import (  # noqa: E402
    Comp,
    make_arrays_competition,
    make_audio_competition,
    make_tabular_competition,
)
from train_helpers import _train, _write_folds  # noqa: E402


@pytest.fixture(scope="session")
def tiny_audio(tmp_path_factory: pytest.TempPathFactory) -> Comp:
    return make_audio_competition(tmp_path_factory.mktemp("tiny_audio"))


@pytest.fixture(scope="session")
def tiny_audio_prep(tiny_audio: Comp, tmp_path_factory: pytest.TempPathFactory):
    from src.config import load_config
    from src.features import prepare

    workdir = tmp_path_factory.mktemp("tiny_audio_work")
    cfg = load_config(tiny_audio.config)
    return tiny_audio, prepare(cfg, workdir, workers=1), workdir


@pytest.fixture
def tabular(tmp_path: Path) -> Comp:
    return make_tabular_competition(tmp_path)


@pytest.fixture
def arrays(tmp_path: Path) -> Comp:
    return make_arrays_competition(tmp_path)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    w.mkdir()
    return w


@pytest.fixture(scope="module")
def tab_runs(tmp_path_factory):
    """Tabular MLP: two runs with seed 3 (both folds), one with seed 4 (fold 0 only), one fold file."""
    root = tmp_path_factory.mktemp("tab_train")
    from src.config import load_config
    from src.features import prepare

    comp = make_tabular_competition(root, n_per_class=10)
    cfg = load_config(comp.config)
    prep = prepare(cfg, root)
    fp = _write_folds(prep, root)
    runs = {"a": _train(cfg, prep, root, "mlp", "a", seed=3, plots=True), "b": _train(cfg, prep, root, "mlp", "b", seed=3),
            "c": _train(cfg, prep, root, "mlp", "c", seed=4, folds=[0])}
    return comp, cfg, prep, root, fp, runs


@pytest.fixture(scope="module")
def two_torch_threads():
    """Pin torch to the machine's 2 cores for a module (heavy forward/backward tests), restoring it afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
