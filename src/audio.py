"""Audio decoding: soundfile first (fast, wav/flac/ogg/au and mp3 with libsndfile>=1.1),
librosa/audioread as fallback. Always returns mono float32 at the requested rate.

``torchaudio.load`` is not used: since torchaudio 2.9 it needs torchcodec.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DataError

log = logging.getLogger(__name__)


class AudioError(DataError):
    """A clip cannot be used: missing, a folder, unreadable, corrupt, empty, silent, or its channels cancel."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _read_soundfile(path: Path, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """(n_samples, n_channels) float32 and the file's rate; with ``seconds``, only the first that many are decoded."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        frames = int(np.ceil(seconds * f.samplerate)) if seconds else -1
        return f.read(frames=frames, dtype="float32", always_2d=True), int(f.samplerate)


def _read_librosa(path: Path, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """(n_samples, n_channels) float32 and the file's rate; channels are kept so a cancelling mix can be named."""
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about the audioread fallback
        y, sr = librosa.load(str(path), sr=None, mono=False, duration=seconds)  # (channels, n) or (n,)
    return np.atleast_2d(y).T.astype(np.float32), int(sr)


def _decode(path: Path, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Try each decoder in turn (only the first ``seconds`` when given); keep every decoder's message for the error."""
    errors = []
    for reader in (_read_soundfile, _read_librosa):
        try:
            return reader(path, seconds)
        except Exception as exc:  # each decoder raises its own types; we keep all messages
            errors.append(f"{reader.__name__.removeprefix('_read_')}: {type(exc).__name__}: {exc}")
    raise AudioError(path, "cannot decode audio (corrupt or unsupported format); " + " | ".join(errors))


def to_mono(data: np.ndarray) -> np.ndarray:
    """(n, channels) -> (n,) channel mean, as a matrix-vector product: ``data.mean(axis=1)`` reduces across the two
    interleaved columns element by element (55 ms for 30 s of 44.1-kHz stereo, more than the STFT); BLAS takes 2 ms."""
    if data.shape[1] == 1:
        return data[:, 0]
    return data @ np.full(data.shape[1], 1.0 / data.shape[1], dtype=data.dtype)


def _silence_problem(channels: int, channel_peak: float, peak: float, threshold: float) -> str:
    """Why the mono mix is silent: a silent file, or channels that cancel (left = -right)."""
    if channels > 1 and channel_peak >= threshold:
        return (f"channels cancel when mixed to mono (anti-phase stereo): a channel peaks at {channel_peak:.2e}, "
                f"their mean at {peak:.2e}. Fix the file (invert one channel) or take one channel, "
                f"e.g. ffmpeg -i IN -af 'pan=mono|c0=c0' OUT")
    return f"silent clip (peak amplitude {peak:.2e} < silence_threshold {threshold:.0e})"


def _check_file(path: str | Path) -> Path:
    """The checks before decoding: a file (not a folder), present, not empty."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(path, "is a directory, not a file")
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    return path


def load_audio(
    path: str | Path,
    sample_rate: int,
    max_seconds: float | None = None,
    silence_threshold: float = 1e-4,
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Decode, mix to mono and resample. Raise AudioError for unusable clips (the feature stage collects them).

    ``window`` = (start_s, end_s): only that part of a long file (:func:`load_window`; a windowed test row)."""
    if window is not None:
        return load_window(path, sample_rate, window[0], window[1], max_seconds)
    path = _check_file(path)
    # a 10-min file cropped to 30 s decodes 30 s (+ a margin: the resampler sees the context a whole-file decode gives it)
    data, sr = _decode(path, max_seconds + WINDOW_MARGIN_SECONDS if max_seconds else None)
    y = to_mono(data)
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
        raise AudioError(path, _silence_problem(kept.shape[1], float(np.abs(kept).max()) if kept.size else 0.0, peak, silence_threshold))
    return y


WINDOW_MARGIN_SECONDS = 0.1  # input read either side of a window so the resampler's filter sees the same context as a whole-file decode


def load_window(path: str | Path, sample_rate: int, start_s: float, end_s: float, max_seconds: float | None = None) -> np.ndarray:
    """Samples [start_s, end_s) of a long file, mono float32 at ``sample_rate``, exactly ``(end_s - start_s) * sample_rate``
    long: a window running past the end of the file is padded with zeros (``src.data.list_windows`` keeps such a last
    window only when at least half of it is audio). Only the window (plus :data:`WINDOW_MARGIN_SECONDS` either side when
    resampling) is decoded, via soundfile's seek, so memory is that of one window whatever the file's length.

    Equals the slice of :func:`load_audio`'s whole-file decode (bit-identical at the file's own rate; after resampling
    to within the resampler's rounding, the margin giving the filter the same context). A silent window is not an
    error: a quiet stretch of a soundscape is a row to predict. A file soundfile cannot open is decoded whole by the
    fallback decoder (logged), then sliced."""
    import soundfile as sf

    path = _check_file(path)
    n_out = max(1, int(round((end_s - start_s) * sample_rate)))
    try:
        sfile = sf.SoundFile(str(path))
    except Exception:  # soundfile's errors vary by format; the fallback decoder names every failure
        log.warning("%s: soundfile cannot open it; decoding the whole file for window %.2f-%.2f s", path, start_s, end_s)
        data, sr = _decode(path)
        y = _resampled(path, to_mono(data), sr, sample_rate)
        return _fit(path, y[int(round(start_s * sample_rate)):], n_out, sample_rate, max_seconds)
    with sfile:
        sr = int(sfile.samplerate)
        s0 = int(round(start_s * sr))
        lead, tail = _margins(sr, sample_rate, s0)
        a, b = s0 - lead, min(int(sfile.frames), int(round(end_s * sr)) + tail)
        try:
            sfile.seek(a)
            data = sfile.read(max(0, b - a), dtype="float32", always_2d=True)  # (n, channels): the window and its margins
        except Exception as exc:  # a decoder failure mid-file: named like load_audio's
            raise AudioError(path, f"cannot decode audio at {start_s:.2f} s (corrupt or unsupported format); soundfile: "
                                   f"{type(exc).__name__}: {exc}") from None
    y = _resampled(path, to_mono(data), sr, sample_rate) if len(data) else np.zeros(0, np.float32)
    return _fit(path, y[lead * sample_rate // sr:], n_out, sample_rate, max_seconds)


def _margins(sr: int, sample_rate: int, s0: int) -> tuple[int, int]:
    """Input samples read before and after a window: none at the output rate; else about WINDOW_MARGIN_SECONDS, the
    leading one a whole number of output samples long (a multiple of sr / gcd) so the window's first sample stays put."""
    if sr == sample_rate:
        return 0, 0
    unit = sr // int(np.gcd(sr, sample_rate))
    k = min(int(np.ceil(WINDOW_MARGIN_SECONDS * sr / unit)), s0 // unit)
    return k * unit, int(np.ceil(WINDOW_MARGIN_SECONDS * sr))


def _resampled(path: Path, y: np.ndarray, sr: int, sample_rate: int) -> np.ndarray:
    """Mono samples at ``sample_rate`` (load_audio's resampler); NaN/inf is a corrupt file."""
    if not np.isfinite(y).all():
        raise AudioError(path, "decoded samples contain NaN/inf (corrupt file)")
    if sr == sample_rate:
        return y.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq").astype(np.float32)


def _fit(path: Path, y: np.ndarray, n_out: int, sample_rate: int, max_seconds: float | None) -> np.ndarray:
    """Exactly ``n_out`` samples (zero-padded past the end of the file), then load_audio's ``max_seconds`` crop."""
    if len(y) == 0:
        raise AudioError(path, "the window lies past the end of the file (0 samples decoded)")
    y = y[:n_out] if len(y) >= n_out else np.pad(y, (0, n_out - len(y)))
    return y[: int(max_seconds * sample_rate)] if max_seconds else y


def read_blocks(
    path: str | Path,
    sample_rate: int,
    block_seconds: float = 60.0,
    max_seconds: float | None = None,
    silence_threshold: float = 1e-4,
) -> Iterator[np.ndarray]:
    """:func:`load_audio`'s samples (mono float32 at ``sample_rate``, cropped to ``max_seconds``) in blocks of about
    ``block_seconds``, so a file of hours needs the memory of one block (``src.predict`` streams long files).

    soundfile decodes block by block and soxr's streaming resampler (the engine of ``librosa.resample(res_type=
    "soxr_hq")``) gives bit-identical samples to the one-shot resampling; a file soundfile cannot open takes
    load_audio's fallback whole, then is cut into blocks. The same checks raise the same :class:`AudioError`;
    the whole-file ones (empty, silent, cancelling channels) after the last block."""
    import soundfile as sf

    path = _check_file(path)
    try:
        sfile = sf.SoundFile(str(path))
    except Exception:  # soundfile's errors vary by format; load_audio tries the next decoder and names every failure
        y = load_audio(path, sample_rate, max_seconds, silence_threshold)
        step = max(1, int(block_seconds * sample_rate))
        yield from (y[s:s + step] for s in range(0, len(y), step))
        return
    with sfile:
        yield from _stream(sfile, path, sample_rate, block_seconds, max_seconds, silence_threshold)


def _stream(sfile, path: Path, sample_rate: int, block_seconds: float, max_seconds: float | None,
            silence_threshold: float) -> Iterator[np.ndarray]:
    """The block loop of :func:`read_blocks`: mix, check, resample, crop; the silence verdict at the end."""
    import soxr

    sr, step = int(sfile.samplerate), max(1, int(block_seconds * sfile.samplerate))
    resampler = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ") if sr != sample_rate else None
    limit = int(max_seconds * sample_rate) if max_seconds else None  # output samples kept (load_audio's crop)
    raw_limit = int(np.ceil(max_seconds * sr)) if max_seconds else None  # input samples whose channels the silence check sees
    n_in = n_out = 0
    peak = channel_peak = 0.0
    while limit is None or n_out < limit:
        try:
            data = sfile.read(step, dtype="float32", always_2d=True)  # (n, channels)
        except Exception as exc:  # a decoder failure mid-file: named like load_audio's
            raise AudioError(path, f"cannot decode audio (corrupt or unsupported format); soundfile: {type(exc).__name__}: {exc}") from None
        last = len(data) < step
        kept = data if raw_limit is None else data[: max(0, raw_limit - n_in)]
        channel_peak = max(channel_peak, float(np.abs(kept).max()) if kept.size else 0.0)
        y = to_mono(data)
        if not np.isfinite(y).all():
            raise AudioError(path, "decoded samples contain NaN/inf (corrupt file)")
        n_in += len(y)
        if resampler is not None:
            y = resampler.resample_chunk(y, last=last)
            if last:  # librosa.resample's fix_length: exactly ceil(n * ratio) samples
                want = max(0, int(np.ceil(n_in * (float(sample_rate) / sr))) - n_out)
                y = y[:want] if len(y) >= want else np.pad(y, (0, want - len(y)))
        if limit is not None:
            y = y[: limit - n_out]
        n_out += len(y)
        peak = max(peak, float(np.abs(y).max()) if y.size else 0.0)
        if y.size:
            yield y.astype(np.float32, copy=False)
        if last:
            break
    if n_in == 0:
        raise AudioError(path, "decoded to 0 samples (empty clip)")
    if peak < silence_threshold:
        raise AudioError(path, _silence_problem(sfile.channels, channel_peak, peak, silence_threshold))
