"""Audio decoding: soundfile first (fast, wav/flac/ogg/au and mp3 with libsndfile>=1.1),
librosa/audioread as fallback. Always returns mono float32 at the requested rate.

``torchaudio.load`` is not used: since torchaudio 2.9 it needs torchcodec.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from .errors import DataError

log = logging.getLogger(__name__)


class AudioError(DataError):
    """A clip cannot be used: missing, a folder, unreadable, corrupt, empty, silent, or its channels cancel."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    """(n_samples, n_channels) float32 and the file's rate."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(sr)


def _read_librosa(path: Path) -> tuple[np.ndarray, int]:
    """(n_samples, n_channels) float32 and the file's rate; channels are kept so a cancelling mix can be named."""
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about the audioread fallback
        y, sr = librosa.load(str(path), sr=None, mono=False)  # (channels, n) or (n,)
    return np.atleast_2d(y).T.astype(np.float32), int(sr)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Try each decoder in turn; keep every decoder's message for the error."""
    errors = []
    for reader in (_read_soundfile, _read_librosa):
        try:
            return reader(path)
        except Exception as exc:  # each decoder raises its own types; we keep all messages
            errors.append(f"{reader.__name__.removeprefix('_read_')}: {type(exc).__name__}: {exc}")
    raise AudioError(path, "cannot decode audio (corrupt or unsupported format); " + " | ".join(errors))


def _silence_problem(data: np.ndarray, peak: float, threshold: float) -> str:
    """Why the mono mix is silent: a silent file, or channels that cancel (left = -right)."""
    channel_peak = float(np.abs(data).max()) if data.size else 0.0
    if data.shape[1] > 1 and channel_peak >= threshold:
        return (f"channels cancel when mixed to mono (anti-phase stereo): a channel peaks at {channel_peak:.2e}, "
                f"their mean at {peak:.2e}. Fix the file (invert one channel) or take one channel, "
                f"e.g. ffmpeg -i IN -af 'pan=mono|c0=c0' OUT")
    return f"silent clip (peak amplitude {peak:.2e} < silence_threshold {threshold:.0e})"


def load_audio(
    path: str | Path,
    sample_rate: int,
    max_seconds: float | None = None,
    silence_threshold: float = 1e-4,
) -> np.ndarray:
    """Decode, mix to mono and resample. Raise AudioError for unusable clips (the feature stage collects them)."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(path, "is a directory, not a file")
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    data, sr = _decode(path)
    y = data.mean(axis=1)
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
        kept = data[: int(np.ceil(max_seconds * sr))] if max_seconds else data  # the part the mix was cropped to
        raise AudioError(path, _silence_problem(kept, peak, silence_threshold))
    return y
