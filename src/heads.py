"""Classic heads beside the MLP: scikit-learn estimators trained per fold under the same run contract.

``logreg`` (multinomial logistic regression), ``svm`` (RBF support-vector classifier with Platt
probabilities) and ``ridge`` (ridge regression, for regression tasks) fit in seconds on feature
vectors — typically frozen embeddings of a pretrained network (``[features] vector =
["musicnn_msd"]``). Each is a scikit-learn ``Pipeline`` that standardises with the training fold's
statistics only, so they are as honest as the networks; their fold models are saved as
``fold<k>.joblib`` and their predictions go through the same ``oof.npy``/``test.npy``/``metrics.json``,
so they ensemble and compare like any run.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def build_logreg(task: str, C: float = 1.0, max_iter: int = 3000, seed: int = 0) -> Pipeline:
    """Standardise, then L2-regularised multinomial logistic regression (``C``: inverse regularisation)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))


def build_svm(task: str, C: float = 1.0, gamma: str | float = "scale", seed: int = 0) -> Pipeline:
    """Standardise, then an RBF SVM with Platt-scaled probabilities (fitted by an internal 5-fold CV)."""
    return make_pipeline(StandardScaler(), SVC(C=C, gamma=gamma, probability=True, random_state=seed))


def build_ridge(task: str, alpha: float = 1.0, seed: int = 0) -> Pipeline:
    """Standardise, then ridge regression on every target at once (regression tasks)."""
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def logreg_space(trial: Any) -> dict[str, Any]:
    return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}


def svm_space(trial: Any) -> dict[str, Any]:
    return {"C": trial.suggest_float("C", 1e-2, 1e3, log=True),
            "gamma": trial.suggest_categorical("gamma", ["scale", 1e-3, 1e-2, 1e-1])}


def ridge_space(trial: Any) -> dict[str, Any]:
    return {"alpha": trial.suggest_float("alpha", 1e-3, 1e3, log=True)}


def fit_head(est: BaseEstimator, X: np.ndarray, y: np.ndarray) -> BaseEstimator:
    """Fit on the training fold (float64 for numerically stable solvers)."""
    return est.fit(np.asarray(X, dtype=np.float64), y)


def head_predict(est: BaseEstimator, X: np.ndarray, n_out: int, classification: bool) -> np.ndarray:
    """Class probabilities over every class (a fold may lack a class in training), or regression outputs."""
    X = np.asarray(X, dtype=np.float64)
    if not classification:
        return np.asarray(est.predict(X), dtype=np.float32).reshape(len(X), n_out)
    out = np.zeros((len(X), n_out), dtype=np.float32)
    if len(X):
        out[:, est.classes_] = est.predict_proba(X)
    return out
