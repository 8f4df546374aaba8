"""Waveform augmentation: background noise, gain, time shift and pitch shift, then log-mel on the fly.

Only when one of the train settings ``noise_p``, ``gain_db``, ``time_shift`` or ``pitch_shift`` is on does
a run need waveforms: the feature cache then gets one more entry, the ``wave`` recipe
(``cache/features/<name>-wave-<hash>/logmel.npy``, int16, memory-mapped) that holds, for every cached
log-mel segment, exactly the samples its STFT frames read (``(seg - 1) * hop + n_fft`` samples of the
reflect-padded clip), so item ``i`` of the wave items is the audio of log-mel item ``i``. Without these
settings nothing here runs and training reads the plain log-mel cache (the fast path).

Per training batch (:class:`WaveBatches`): waveforms (B, L) -> circular time shift -> noise mixed in at a
random SNR (from the files of ``noise_dir``, or another training segment of the batch) -> gain -> STFT
power -> pitch shift (the power spectrogram's frequency axis scaled by ``2 ** (semitones / 12)``: the
magnitude of a pitch-shifted signal, vectorised per sample, duration kept) -> the cache's mel filterbank,
dB and ``top_db`` floor (the clip's own top, as the cache floors it). All on the training device, every
random draw from the fold's numpy generator, so a run is reproducible. Validation, test and OOF
predictions never come here: they read the cached log-mel.

Why not a library: torch-audiomentations 0.12 reads noise files with ``torchaudio.info``/``load``, which
torchaudio 2.9+ (we pin 2.11) no longer has, pitch-shifts in a Python loop per example and draws from
torch's global RNG; audiomentations is numpy on the CPU, one example at a time, with four more dependencies.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch

from .config import AUDIO_EXTENSIONS, AudioConfig, WorkspaceConfig
from .errors import ConfigError
from .features import SCALE, WAVE_RECIPE, Items, Prepared, _Extractor, run_recipe, wave_geometry
from .loader import per_item
from .settings import TrainConfig

log = logging.getLogger(__name__)

WAVE_SETTINGS = ("noise_p", "gain_db", "time_shift", "pitch_shift")  # any of them > 0: the fold trains on waveforms


def wave_on(tc: TrainConfig) -> bool:
    return any(getattr(tc, name) for name in WAVE_SETTINGS)


# ----------------------------------------------------------------------------- settings


def check_settings(cfg: WorkspaceConfig, tc: TrainConfig, model_recipe: str) -> None:
    """Before any work: the waveform settings are consistent and the run's inputs can be recomputed from audio."""
    if tc.noise_dir and not tc.noise_p:
        raise ConfigError(f"--noise-dir {tc.noise_dir} does nothing with --noise-p 0", "set --noise-p (e.g. 0.5) or drop --noise-dir")
    lo_hi = tc.noise_snr
    if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
        raise ConfigError(f"--noise-snr {lo_hi}: needs two values, min <= max (dB)", "e.g. --noise-snr 3 30")
    for name in ("noise_p",):
        if not 0 <= getattr(tc, name) <= 1:
            raise ConfigError(f"--noise-p {tc.noise_p} is not a probability", "use a value in [0, 1]")
    for name in ("gain_db", "time_shift", "pitch_shift"):
        if getattr(tc, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(tc, name)} is negative", "give the maximum magnitude (>= 0; 0: off)")
    if tc.time_shift > 1:
        raise ConfigError(f"--time-shift {tc.time_shift} is more than the whole segment", "use a fraction in [0, 1]")
    if not wave_on(tc):
        return
    recipe = run_recipe(model_recipe, tc)
    if cfg.data.kind != "audio" or recipe != "logmel":
        what = f"[data] kind is {cfg.data.kind!r}" if cfg.data.kind != "audio" else f"the model is fed the {recipe!r} recipe"
        raise ConfigError(f"waveform augmentation ({', '.join(f'{n}={getattr(tc, n)}' for n in WAVE_SETTINGS if getattr(tc, n))}) "
                          f"recomputes the config's log-mel from audio, but {what}", "drop the waveform settings for this run")
    if tc.noise_dir:
        noise_files(tc.noise_dir)


def noise_files(folder: str) -> list[Path]:
    """The audio files of a noise folder (recursive); a missing or empty folder is an error naming it."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--noise-dir {folder}: no such folder ({root.resolve()})", "point it at a folder of background-noise audio files")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise ConfigError(f"--noise-dir {folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {root.resolve()}",
                          "add background-noise recordings, or leave --noise-dir empty to mix other training clips")
    return files


@functools.lru_cache(maxsize=2)
def noise_bank(folder: str, sample_rate: int) -> np.ndarray:
    """Every noise file decoded at the config's rate and concatenated (once per process): (n_samples,) float32."""
    from .audio import load_audio

    parts = [load_audio(p, sample_rate) for p in noise_files(folder)]
    bank = np.concatenate(parts).astype(np.float32)
    log.info("noise bank: %d file(s), %.1f s from %s", len(parts), len(bank) / sample_rate, folder)
    return bank


# ----------------------------------------------------------------------------- training batches


def fold_waves(prep: Prepared, tc: TrainConfig, train: Items, fold_of_row: np.ndarray, k: int, X_tr: np.ndarray) -> WaveBatches | None:
    """The fold's augmented-batch maker (None when no waveform augmentation is on): the wave items of exactly
    the training items :func:`src.train.fold_data` keeps, in its order, and each item's clip top in dB, so the
    on-the-fly floor is the cache's: the clip's floored bins sit at top - top_db (its cached minimum + top_db),
    else its cached maximum (a clip without floored bins then floors at its own quietest value)."""
    if not wave_on(tc):
        return None
    waves = prep.items("spec", "train", WAVE_RECIPE)
    if len(waves.row) != len(train.row) or not np.array_equal(waves.row, train.row):
        raise RuntimeError(f"wave cache does not align with the log-mel cache ({len(waves.row)} vs {len(train.row)} items)")
    tr_idx = np.flatnonzero(fold_of_row[train.row] != k)  # = fold_data's training items
    rows = train.row[tr_idx]
    hi_lo = per_item(X_tr, lambda x: np.stack([x.max(axis=(1, 2)), x.min(axis=(1, 2))], axis=1))  # (n, 2): one read of the fold
    top = np.full(train.n_rows, -np.inf, dtype=np.float32)
    np.maximum.at(top, rows, hi_lo[:, 0])  # (n_rows,) each clip's top over its training items
    low = np.full(train.n_rows, np.inf, dtype=np.float32)
    np.minimum.at(low, rows, hi_lo[:, 1])
    top = np.maximum(top, low + prep.cfg.audio.top_db)  # exact where the cache floored (frames past the last segment count)
    bank = noise_bank(tc.noise_dir, prep.cfg.audio.sample_rate) if tc.noise_dir and tc.noise_p else None
    single = np.bincount(train.row, minlength=train.n_rows)[rows] == 1  # clips of one segment: maybe shorter than it
    return WaveBatches(prep.cfg.audio, tc, waves.X, tr_idx, top[rows], bank, np.where(single, per_item(X_tr, valid_frames), X_tr.shape[-1]))


def valid_frames(X: np.ndarray) -> np.ndarray:
    """(n,) frames before the padding of each cached segment (n, F, T): the cache pads a clip shorter than a segment
    with its minimum, trailing columns at the segment's minimum; the on-the-fly log-mel repeats that padding."""
    pad = (X.max(axis=1) == X.min(axis=(1, 2))[:, None])  # (n, T) columns entirely at the minimum
    trailing = np.cumprod(pad[:, ::-1], axis=1).sum(axis=1)
    return (X.shape[-1] - trailing).astype(np.int64)


class WaveBatches:
    """``(batch of training-item indices, rng, device, fill) -> (B, n_mels, T)`` augmented log-mel on ``device``."""

    def __init__(self, a: AudioConfig, tc: TrainConfig, waves, items: np.ndarray, top: np.ndarray, bank: np.ndarray | None,
                 valid: np.ndarray | None = None):
        self.a, self.tc, self.waves, self.items, self.top, self.bank = a, tc, waves, items, top, bank
        self.valid = valid  # (n,) frames before the cache's padding of a short clip (None: all)
        self.L = wave_geometry(a)[2]
        ex = _Extractor(a)  # the cache's own window and mel filterbank
        self._cpu = (ex.window, ex.mel)
        self._dev: dict[str, tuple] = {}

    def front_end(self, device: torch.device) -> tuple:
        """(window, MelScale) on ``device``, moved once."""
        if str(device) not in self._dev:
            win, mel = self._cpu
            self._dev[str(device)] = (win.to(device), mel.to(device))
        return self._dev[str(device)]

    def __call__(self, b: np.ndarray, rng: np.random.Generator, device: torch.device, fill: float = 0.0) -> torch.Tensor:
        tc = self.tc
        w = torch.from_numpy(self.waves[self.items[b]]).to(device) / SCALE  # (B, L)
        top = torch.from_numpy(self.top[b]).to(device)  # (B,) dB
        draws = self.draw(len(b), rng)
        w = augment_wave(w, draws, self.bank_tensor(device))
        top = top + torch.as_tensor(draws["gain"], dtype=top.dtype, device=device)  # the whole clip got louder/quieter
        x = self.log_mel(w, top, device, draws["semitones"])  # (B, n_mels, seg)
        if self.valid is not None and (self.valid[b] < x.shape[-1]).any():
            x = pad_like_cache(x, torch.from_numpy(self.valid[b]).to(device))
        if tc.crop_frames and tc.crop_frames < x.shape[-1]:  # crop_time's draws, on the device
            starts = torch.from_numpy(rng.integers(0, x.shape[-1] - tc.crop_frames + 1, size=len(x))).to(device)
            idx = starts[:, None] + torch.arange(tc.crop_frames, device=device)  # (B, crop)
            x = x.gather(2, idx[:, None, :].expand(-1, x.shape[1], -1))  # (B, n_mels, crop)
        if tc.rotate or tc.shift or tc.scale:
            from .augment import affine

            x = torch.from_numpy(affine(x.cpu().numpy(), tc, int(rng.integers(2**31)), fill)).to(device)
        return x

    def draw(self, B: int, rng: np.random.Generator) -> dict:
        """Every random number of one batch, from the fold's generator (same seed -> same batch, any device)."""
        tc, zero = self.tc, np.zeros(B)
        d = {"gain": rng.uniform(-tc.gain_db, tc.gain_db, B) if tc.gain_db else zero,
             "shift": np.round(rng.uniform(-tc.time_shift, tc.time_shift, B) * self.L).astype(np.int64) if tc.time_shift else zero.astype(np.int64),
             "semitones": rng.uniform(-tc.pitch_shift, tc.pitch_shift, B) if tc.pitch_shift else zero,
             "noise": (rng.random(B) < tc.noise_p) if tc.noise_p and (self.bank is not None or B > 1) else np.zeros(B, bool)}
        d["snr"] = rng.uniform(tc.noise_snr[0], tc.noise_snr[1], B) if d["noise"].any() else zero
        if d["noise"].any() and self.bank is not None:
            d["start"] = rng.integers(0, max(1, len(self.bank) - self.L + 1), size=B)
        elif d["noise"].any():
            d["partner"] = (np.arange(B) + rng.integers(1, B, size=B)) % B  # another segment of the batch, never itself
        return d

    def bank_tensor(self, device: torch.device) -> torch.Tensor | None:
        if self.bank is None:
            return None
        key = f"bank:{device}"
        if key not in self._dev:
            bank = self.bank if len(self.bank) >= self.L else np.resize(self.bank, self.L)  # tile a short bank
            self._dev[key] = torch.from_numpy(bank).to(device)
        return self._dev[key]

    def log_mel(self, w: torch.Tensor, top: torch.Tensor, device: torch.device, semitones: np.ndarray) -> torch.Tensor:
        """(B, L) waveforms -> (B, n_mels, seg) dB as the cache computes it (_Extractor.power / mel_db / spectra)."""
        import torchaudio

        a = self.a
        win, mel = self.front_end(device)
        z = torch.stft(w, a.n_fft, a.hop_length, window=win, center=False, return_complex=True)  # (B, F, seg)
        power = z.real ** 2 + z.imag ** 2
        if np.any(semitones):
            power = pitch_warp(power, torch.as_tensor(2.0 ** (semitones / 12.0), dtype=power.dtype, device=device))
        db = torchaudio.functional.amplitude_to_DB(mel(power), 10.0, 1e-10, 0.0, None)  # (B, n_mels, seg)
        top = torch.maximum(top, db.amax(dim=(1, 2)))  # noise can lift a segment above its clip's top
        return torch.maximum(db, (top - a.top_db)[:, None, None])


def augment_wave(w: torch.Tensor, d: dict, bank: torch.Tensor | None) -> torch.Tensor:
    """(B, L) -> (B, L): circular time shift, noise at ``d["snr"]`` dB where ``d["noise"]``, then gain (all vectorised)."""
    B, L = w.shape
    dev = w.device
    if np.any(d["shift"]):
        idx = (torch.arange(L, device=dev)[None, :] - torch.from_numpy(d["shift"]).to(dev)[:, None]) % L  # (B, L)
        w = w.gather(1, idx)
    if d["noise"].any():
        if bank is not None:
            idx = torch.from_numpy(d["start"]).to(dev)[:, None] + torch.arange(L, device=dev)[None, :]  # (B, L)
            noise = bank[idx.clamp_max(len(bank) - 1)]
        else:
            noise = w[torch.from_numpy(d["partner"]).to(dev)]
        rms = lambda x: x.pow(2).mean(dim=1).sqrt().clamp_min(1e-8)  # noqa: E731  (B,)
        snr = torch.from_numpy(d["snr"]).to(w.dtype).to(dev)
        scale = rms(w) / (rms(noise) * 10.0 ** (snr / 20.0)) * torch.from_numpy(d["noise"]).to(w.dtype).to(dev)  # 0: no noise
        w = w + noise * scale[:, None]
    if np.any(d["gain"]):
        w = w * (10.0 ** (torch.from_numpy(d["gain"]).to(w.dtype).to(dev) / 20.0))[:, None]
    return w


def pitch_warp(power: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Pitch shift of a power spectrogram (B, F, T) by ``ratio`` (B,): bin f takes the power of bin f / ratio
    (linear interpolation; above the old top: silence). A partial at frequency f moves to f * ratio, the
    length stays: what the STFT magnitude of a pitch-shifted signal shows, without a phase vocoder."""
    B, F, T = power.shape
    src = torch.arange(F, device=power.device, dtype=power.dtype)[None, :] / ratio[:, None]  # (B, F) source bin
    lo = src.floor().long().clamp(0, F - 1)
    hi = (lo + 1).clamp_max(F - 1)
    frac = (src - lo.to(src.dtype)).clamp(0, 1)
    inside = (src <= F - 1).to(power.dtype)  # (B, F)
    take = lambda i: power.gather(1, i[:, :, None].expand(-1, -1, T))  # noqa: E731
    out = take(lo).mul_(((1 - frac) * inside)[:, :, None])  # the (B, F, T) work: two gathers, one mul, one addcmul
    return out.addcmul_(take(hi), (frac * inside)[:, :, None])


def pad_like_cache(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, F, T): frames from ``valid`` (B,) on set to the minimum of the frames before (the cache's short-clip padding)."""
    keep = torch.arange(x.shape[-1], device=x.device)[None, :] < valid[:, None]  # (B, T)
    low = torch.where(keep[:, None, :], x, torch.full_like(x, float("inf"))).amin(dim=(1, 2))  # (B,)
    return torch.where(keep[:, None, :], x, low[:, None, None])
