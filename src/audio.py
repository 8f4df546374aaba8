"""Audio decoding: soundfile first (fast, wav/flac/ogg/au and mp3 with libsndfile>=1.1),
librosa/audioread as fallback. Always returns mono float32 at the requested rate.

``torchaudio.load`` is not used: since torchaudio 2.9 it needs torchcodec.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class AudioError(RuntimeError):
    """A clip cannot be used: unreadable, corrupt, empty or silent."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    return data.mean(axis=1), int(sr)


def _read_librosa(path: Path) -> tuple[np.ndarray, int]:
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about the audioread fallback
        y, sr = librosa.load(str(path), sr=None, mono=True)
    return y.astype(np.float32), int(sr)


def load_audio(
    path: str | Path,
    sample_rate: int,
    max_seconds: float | None = None,
    silence_threshold: float = 1e-4,
) -> np.ndarray:
    """Decode, mix to mono and resample. Raise AudioError for unusable clips."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    errors = []
    y = sr = None
    for reader in (_read_soundfile, _read_librosa):
        try:
            y, sr = reader(path)
            break
        except Exception as exc:  # each decoder raises its own types; we keep all messages
            errors.append(f"{reader.__name__.removeprefix('_read_')}: {type(exc).__name__}: {exc}")
    if y is None:
        raise AudioError(path, "cannot decode audio (corrupt or unsupported format); " + " | ".join(errors))
    if y.size == 0:
        raise AudioError(path, "decoded to 0 samples (empty clip)")
    if not np.isfinite(y).all():
        raise AudioError(path, "decoded samples contain NaN/inf (corrupt file)")
    if sr != sample_rate:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq").astype(np.float32)
    if max_seconds:
        y = y[: int(max_seconds * sample_rate)]
    peak = float(np.abs(y).max())
    if peak < silence_threshold:
        raise AudioError(path, f"silent clip (peak amplitude {peak:.2e} < silence_threshold {silence_threshold:.0e})")
    return y
