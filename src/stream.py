"""A long audio file through a spectrogram recipe in chunks: bounded memory, the feature cache's exact frames.

``src.predict`` must featurise files of any length (minutes, hours) exactly as the feature cache featurised
the training clips, whose segments never straddle a clip. Three pieces do it:

* :func:`src.audio.read_blocks` decodes and resamples block by block (bit-identical to ``load_audio``);
* :func:`frame_chunks` turns the blocks into chunks of STFT frames that are exactly the frames of the whole
  file: frame ``t`` is centred on sample ``t * hop`` and reads ``n_fft`` samples, so a chunk is computed from
  its samples plus ``n_fft // 2`` samples of context either side, and only the file's own two ends see padding;
* :class:`Windows` cuts windows (the cache's segments, or a timeline's windows) out of the frame chunks, each
  window produced exactly once, whatever the chunk size.

A recipe's :class:`Source` says which frames it streams and how a short window is padded: ``logmel`` (the
config's ``[audio]``: two passes, because ``top_db`` floors every frame relative to the whole file's loudest
bin, so the first pass finds it), ``musicnn`` (one pass: its frames are local), and any other recipe with a
``sequence(y)`` method (decoded whole: chroma and beat recipes need the whole clip; not streamed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .audio import load_audio, read_blocks

log = logging.getLogger(__name__)
Chunk = dict[str, np.ndarray]  # name -> (features, t) frames, all aligned on t


def frame_chunks(blocks: Iterable[np.ndarray], frames_fn: Callable[[np.ndarray], Any], hop: int, n_fft: int,
                 chunk_frames: int) -> Iterator[Any]:
    """``frames_fn(whole signal)`` in chunks of ``chunk_frames`` frames (the last axis), from a stream of sample blocks.

    ``frames_fn`` computes centred frames (frame t centred on sample t * hop, ``n_fft`` samples, padded only at the
    signal's ends). Each chunk is computed on a slice of the signal that starts ``margin`` frames before the chunk
    and ends where its last frame's samples end, so every frame sees the whole file's samples; a file shorter than
    one chunk is computed in one call on the whole signal, exactly as the feature cache does."""
    margin = -(-(n_fft // 2) // hop) + 1  # frames of left context (ceil, +1 keeps the slice longer than the padding)
    reach = n_fft - n_fft // 2  # samples a frame reads at and after its centre
    buf, c, f0 = np.zeros(0, np.float32), 0, 0  # buf[0] is sample c (a multiple of hop); f0: next frame to emit
    for block in blocks:
        buf = np.concatenate([buf, block])
        while c + len(buf) >= (f0 + chunk_frames - 1) * hop + reach:
            f1 = f0 + chunk_frames
            frames = frames_fn(buf[: (f1 - 1) * hop + reach - c])
            yield frames[..., f0 - c // hop: f1 - c // hop]
            f0 = f1
            new_c = max(0, f0 - margin) * hop
            buf, c = buf[new_c - c:], new_c
    if len(buf):  # the tail, with the file's own end padding (the slice is longer than n_fft // 2: see margin)
        frames = frames_fn(buf)
        if frames.shape[-1] > f0 - c // hop:
            yield frames[..., f0 - c // hop:]


@dataclass
class Window:
    """Frames ``[start, start + n)`` of every stream of a source; ``partial``: fewer frames than the window length."""

    start: int
    frames: Chunk
    partial: bool


class Windows:
    """Windows of ``length`` frames every ``hop`` frames over frame chunks fed in order; each produced once.

    ``keep_partial=False`` is the feature cache's rule (complete windows only; a file shorter than one window gives
    one partial window, to be padded); ``True`` a timeline's: also the window that reaches past the end, once."""

    def __init__(self, length: int, hop: int, keep_partial: bool):
        self.length, self.hop, self.keep_partial = max(1, int(length)), max(1, int(hop)), keep_partial
        self.buf: Chunk = {}
        self.b0 = self.next = self.covered = self.total = 0  # buffer start, next window start, end of the last window, frames seen

    def feed(self, chunk: Chunk) -> list[Window]:
        self.buf = dict(chunk) if not self.buf else {k: np.concatenate([self.buf[k], v], axis=-1) for k, v in chunk.items()}
        self.total += next(iter(chunk.values())).shape[-1]
        out = []
        while self.next + self.length <= self.total:
            a = self.next - self.b0
            out.append(Window(self.next, {k: v[..., a:a + self.length] for k, v in self.buf.items()}, False))
            self.covered, self.next = self.next + self.length, self.next + self.hop
        drop = min(self.next, self.total) - self.b0  # frames no later window reads
        if drop > 0:
            self.buf = {k: v[..., drop:] for k, v in self.buf.items()}
            self.b0 += drop
        return out

    def finish(self) -> list[Window]:
        """The last, partial window (frames up to the end, not padded): only where the end is not yet covered."""
        if self.next < self.total and self.covered < self.total and (self.keep_partial or self.covered == 0):
            a = self.next - self.b0
            return [Window(self.next, {k: v[..., a:] for k, v in self.buf.items()}, True)]
        return []


# ----------------------------------------------------------------------------- recipes


class Source:
    """How one recipe's frames are streamed from a file, cut into the cache's segments and padded."""

    streamed = True  # bounded memory, whatever the file's length
    timed = True  # a frame per hop of samples (timeline windows in seconds apply)

    def __init__(self, extractor: Any, sample_rate: int, hop: int, seg: int, seg_hop: int):
        self.ex, self.sample_rate, self.hop, self.seg, self.seg_hop = extractor, sample_rate, hop, seg, seg_hop
        self.fps = sample_rate / hop  # frames per second

    def chunks(self, path: str, chunk_frames: int) -> Iterator[Chunk]:
        raise NotImplementedError

    def pad(self, frames: np.ndarray, length: int) -> np.ndarray:
        """(features, n) -> (features, length) for a window shorter than ``length`` (the recipe's short-clip rule)."""
        raise NotImplementedError

    def items(self, windows: list[Window], length: int) -> np.ndarray:
        """(n, features, length) model inputs of windows, padded, rounded to float16 as the cache stores them."""
        X = [w.frames["spec"] if w.frames["spec"].shape[-1] == length else self.pad(w.frames["spec"], length) for w in windows]
        return np.stack(X).astype(np.float16).astype(np.float32)


class LogmelSource(Source):
    """The config's log-mel (with MFCC and chroma frames for the clip statistics), in two passes: the first finds the
    file's loudest bin, which ``top_db`` floors every frame against; the second computes the frames."""

    def __init__(self, extractor: Any):
        a = extractor.a
        super().__init__(extractor, a.sample_rate, a.hop_length, extractor.seg, extractor.seg_hop)
        self.floor = np.float32(0)  # the file's minimum log-mel: what short windows are padded with (the cache's rule)

    def _blocks(self, path: str, chunk_frames: int) -> Iterator[np.ndarray]:
        a = self.ex.a
        return read_blocks(path, a.sample_rate, chunk_frames * a.hop_length / a.sample_rate, a.max_seconds, a.silence_threshold)

    def chunks(self, path: str, chunk_frames: int) -> Iterator[Chunk]:
        a, ex = self.ex.a, self.ex
        top = -np.inf
        for power in frame_chunks(self._blocks(path, chunk_frames), ex.power, a.hop_length, a.n_fft, chunk_frames):
            top = max(top, float(ex.mel_db(power).amax()))  # pass 1 (also raises for a silent or corrupt file)
        self.floor = np.float32(np.inf)
        for power in frame_chunks(self._blocks(path, chunk_frames), ex.power, a.hop_length, a.n_fft, chunk_frames):
            logmel, mfcc, chroma = ex.spectra(power, top)
            self.floor = min(self.floor, np.float32(logmel.amin()))
            yield {"spec": logmel.numpy(), "mfcc": mfcc.numpy(), "chroma": chroma.numpy()}

    def pad(self, frames: np.ndarray, length: int) -> np.ndarray:
        return np.pad(frames, ((0, 0), (0, length - frames.shape[-1])), constant_values=float(self.floor))


class MusicnnSource(Source):
    """musicnn's 16 kHz log-mel (local frames: one pass); a short window is repeated to length, as its patches are."""

    def __init__(self, extractor: Any):
        p = extractor.params
        super().__init__(extractor, p["sample_rate"], p["hop_length"], p["patch_frames"], p["patch_hop"])

    def chunks(self, path: str, chunk_frames: int) -> Iterator[Chunk]:
        p = self.ex.params
        blocks = read_blocks(path, p["sample_rate"], chunk_frames * p["hop_length"] / p["sample_rate"], p["max_seconds"],
                             p["silence_threshold"])
        for frames in frame_chunks(blocks, self.ex.frames, p["hop_length"], p["n_fft"], chunk_frames):
            yield {"spec": frames}

    def pad(self, frames: np.ndarray, length: int) -> np.ndarray:
        from .musicnn import patches

        return patches(frames.T, length, length)[0].T  # (96, n) -> (96, length), repeated


class WholeSource(Source):
    """A recipe computed on the whole decoded file (``extractor.sequence(y)``: chroma, beat-synchronised frames):
    correct for any length, but its memory grows with the file (beat tracking needs the whole clip)."""

    streamed = False

    def __init__(self, extractor: Any):
        a = extractor.a
        super().__init__(extractor, a.sample_rate, a.hop_length, extractor.seg, extractor.seg_hop)
        self.floor = np.float32(0)
        self.timed = not str(getattr(extractor, "recipe", "")).endswith("_beat")  # beat recipes: a column per beat, not per hop

    def chunks(self, path: str, chunk_frames: int) -> Iterator[Chunk]:
        a = self.ex.a
        frames = self.ex.sequence(load_audio(path, a.sample_rate, a.max_seconds, a.silence_threshold))
        self.floor = np.float32(frames.min())
        yield {"spec": frames}

    def pad(self, frames: np.ndarray, length: int) -> np.ndarray:
        return np.pad(frames, ((0, 0), (0, length - frames.shape[-1])), constant_values=float(self.floor))


def make_source(cfg: Any, recipe: str) -> Source:
    """The :class:`Source` of a recipe, around the feature cache's own extractor (``src.features.make_extractor``)."""
    from .errors import ConfigError
    from .features import make_extractor

    ex = make_extractor(cfg, recipe)
    if recipe == "logmel":
        return LogmelSource(ex)
    if recipe == "musicnn":
        return MusicnnSource(ex)
    if hasattr(ex, "sequence"):
        return WholeSource(ex)
    raise ConfigError(f"recipe {recipe!r} has no frame source in src.stream", "add one beside LogmelSource / MusicnnSource")
