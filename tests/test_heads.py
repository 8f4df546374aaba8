"""scikit-learn heads (logreg, svm, ridge): trained per fold under the same run contract as the networks."""
from __future__ import annotations

import numpy as np
import pytest
from train_helpers import _write_folds

from src.artifacts import read_json
from src.config import load_config
from src.ensemble import ensemble
from src.errors import ConfigError
from src.features import prepare
from src.settings import TrainConfig
from src.train import check_train_config, resolve_train_config, run_training


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    from fixtures import make_tabular_competition

    root = tmp_path_factory.mktemp("heads")
    comp = make_tabular_competition(root, n_per_class=12, train={"epochs": 3, "lr": 0.01})
    cfg = load_config(comp.config)
    prep = prepare(cfg, root)
    _write_folds(prep, root)
    return comp, cfg, prep, root


@pytest.mark.parametrize("model, params", [("logreg", {"C": 0.5}), ("svm", {"C": 1.0})])
def test_head_run_follows_the_contract_and_ensembles(tab, model, params):
    comp, cfg, prep, root = tab
    tc, sources = resolve_train_config(cfg, model, flags={"run_id": model, "plots": False}, params=params)
    run = run_training(cfg, tc, root, prep, sources=sources)
    for f in ("config.json", "oof.npy", "test.npy", "metrics.json", "fold0.joblib", "fold1.joblib", "fold0_preds.npz"):
        assert (run / f).is_file(), f
    assert not (run / "fold0.pt").exists()
    m = read_json(run / "metrics.json")
    assert m["mean"]["accuracy"] > 0.8 and len(m["history"]["0"]) == 1  # separable Gaussian classes
    oof = np.load(run / "oof.npy")
    np.testing.assert_allclose(oof.sum(1), 1.0, rtol=1e-5)
    # the config's [train] epochs/lr are defaults for networks: not used here, and the run says so
    assert any(s.startswith("--epochs 3") for s in read_json(run / "config.json")["unused_train_defaults"])
    mlp = run_training(cfg, TrainConfig(model="mlp", epochs=3, run_id=f"mlp-for-{model}", plots=False,
                                        model_params={"hidden": [16]}), root, prep)
    ens = ensemble([model, mlp.name], f"ens-{model}", root)
    assert np.load(ens / "test.npy").shape == np.load(run / "test.npy").shape


def test_head_refuses_network_settings_and_the_wrong_task(tab):
    comp, cfg, prep, root = tab
    tc, sources = resolve_train_config(cfg, "logreg", flags={"lr": 0.1})
    with pytest.raises(ConfigError, match=r"--lr 0.1 \(from the command line\) applies to gradient-trained models only"):
        check_train_config(cfg, tc, sources)
    tc, sources = resolve_train_config(cfg, "ridge")
    with pytest.raises(ConfigError, match="model ridge .* is for regression tasks"):
        check_train_config(cfg, tc, sources)
    tc, sources = resolve_train_config(cfg, "logreg", params={"alpha": 1.0})
    with pytest.raises(ConfigError, match=r"--param alpha: model logreg .* its parameters are \['C', 'max_iter'\]"):
        check_train_config(cfg, tc, sources)
