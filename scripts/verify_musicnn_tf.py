"""Check the PyTorch port of musicnn (src/musicnn.py) against the original TensorFlow graph.

One-off: needs a second virtual environment with TensorFlow and the musicnn package (the
workspace environment must never get TensorFlow)::

    python3.11 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras librosa==0.11.0
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    .venv/bin/python scripts/verify_musicnn_tf.py --tf-python /tmp/tfenv/bin/python [--write-reference]

Run with the *workspace* Python. It

1. builds the input patches with the port's recipe (``src.musicnn.musicnn_input``): real audio
   (two 3-s patches from the middle of each GTZAN clip in ``--gtzan``, read-only, nothing copied),
   uniform random patches, and two patches of synthetic music (``synthetic_music``, fixed seed);
2. runs the package's own graph code (``musicnn/models.py``, ``TF_USE_LEGACY_KERAS=1``, graph mode,
   ``Saver.restore`` of the shipped checkpoints) on them in ``--tf-python`` (this same file, ``--tf-phase``);
3. runs the port on the same patches and prints the max |difference| of the tag probabilities, the
   penultimate embedding and the pooled features for every model;
4. also runs the package's own ``extractor.batch_data`` (its spectrogram, under the TF environment's
   NumPy) on a quiet and a loud clip to show what it does against ``musicnn_input``;
5. with ``--write-reference``, stores the small TF-free regression reference of the test suite,
   ``tests/data/musicnn_reference.npz``: the synthetic patches (float16), TF's probabilities, embeddings
   and pooled features for them, and a tiny checkpoint written by TensorFlow for the reader test.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
REFERENCE = ROOT / "tests" / "data" / "musicnn_reference.npz"
TINY_VARS = 160  # enough small variables for a multi-block SSTable index


def synthetic_music(seed: int = 12, seconds: float = 6.0, sr: int = 16000) -> np.ndarray:
    """A few seconds of deterministic 'music': kick-like noise bursts on the beat, a bass line, and
    harmonic chords that change every second. Mono float32 in [-0.6, 0.6]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n)
    for beat in np.arange(0, seconds, 0.5):  # percussion
        i = int(beat * sr)
        m = min(n - i, int(0.15 * sr))
        env = np.exp(-np.arange(m) / (0.03 * sr))
        y[i:i + m] += 0.5 * env * (rng.standard_normal(m) * 0.5 + np.sin(2 * np.pi * 60 * np.arange(m) / sr))
    roots = rng.choice([110.0, 130.81, 146.83, 164.81, 196.0], size=int(np.ceil(seconds)))
    for k, f0 in enumerate(roots):  # chords + bass, one per second
        seg = (t >= k) & (t < k + 1)
        for ratio in (1.0, 1.26, 1.5):
            for h in range(1, 6):
                y[seg] += 0.08 / h * np.sin(2 * np.pi * f0 * 2 * ratio * h * t[seg])
        y[seg] += 0.15 * np.sin(2 * np.pi * f0 / 2 * t[seg])
    y = y / np.abs(y).max() * 0.6
    return y.astype(np.float32)


# ----------------------------------------------------------------------------- TF side (TF environment)


def tf_phase(inputs: Path, out: Path, gtzan: Path | None) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain Eigen kernels (oneDNN reorders sums: ~3x the rounding)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    warnings.filterwarnings("ignore")
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    import musicnn
    from musicnn import configuration as config
    from musicnn import models as tf_models

    x_all = np.load(inputs)["x"]
    res: dict[str, np.ndarray] = {}
    pkg = Path(musicnn.__file__).parent
    for name in MODELS:
        t0 = time.time()
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
            is_training = tf.compat.v1.placeholder(tf.bool)
            outs = tf_models.define_model(x, is_training, name, 50)
            probs = tf.nn.sigmoid(outs[0])
        sess = tf.compat.v1.Session(config=tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2,
                                                                     inter_op_parallelism_threads=1))
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(sess, str(pkg / name) + "/")
        if name.endswith("vgg"):
            fetch = [probs, outs[0], outs[5]]
            p, logits, pool5 = sess.run(fetch, {x: x_all, is_training: False})
            emb = pool5.reshape(len(pool5), -1)  # NHWC flatten, as the port's embed()
            res.update({f"{name}/probs": p, f"{name}/logits": logits, f"{name}/embedding": emb})
        else:
            # logits, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate
            fetch = [probs, outs[0], outs[6], outs[7], outs[8]]
            p, logits, mean_pool, max_pool, pen = sess.run(fetch, {x: x_all, is_training: False})
            res.update({f"{name}/probs": p, f"{name}/logits": logits, f"{name}/embedding": pen,
                        f"{name}/mean_pool": mean_pool, f"{name}/max_pool": max_pool})
        sess.close()
        print(f"  TF {name}: {len(x_all)} patches in {time.time() - t0:.1f} s", flush=True)

    # the package's own spectrogram (extractor.batch_data) on a quiet and a loud clip, run on MSD_musicnn
    if gtzan is not None:
        from musicnn.extractor import batch_data

        for key, rel in (("quiet", "classical/classical.00001.wav"), ("loud", "blues/blues.00000.wav")):
            path = gtzan / rel
            if not path.is_file():
                continue
            batch, _ = batch_data(str(path), 187, 187)
            res[f"pkg_{key}/batch"] = batch.astype(np.float32)
            tf.compat.v1.reset_default_graph()
            x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
            is_training = tf.compat.v1.placeholder(tf.bool)
            probs = tf.nn.sigmoid(tf_models.define_model(x, is_training, "MSD_musicnn", 50)[0])
            with tf.compat.v1.Session() as sess:
                tf.compat.v1.train.Saver().restore(sess, str(pkg / "MSD_musicnn") + "/")
                res[f"pkg_{key}/probs"] = sess.run(probs, {x: batch.astype(np.float32), is_training: False})
        res["tf_numpy_version"] = np.array(np.__version__)

    # a tiny checkpoint written by TensorFlow itself, for the reader test
    tf.compat.v1.reset_default_graph()
    vals = tiny_checkpoint_values()
    tf_vars = [tf.compat.v1.Variable(v, name=k) for k, v in vals.items()]
    with tf.compat.v1.Session() as sess, tempfile.TemporaryDirectory() as d:
        sess.run(tf.compat.v1.variables_initializer(tf_vars))
        prefix = tf.compat.v1.train.Saver(tf_vars).save(sess, os.path.join(d, "tiny"), write_meta_graph=False)
        res["tiny_index"] = np.frombuffer(Path(prefix + ".index").read_bytes(), np.uint8)
        res["tiny_data"] = np.frombuffer(Path(prefix + ".data-00000-of-00001").read_bytes(), np.uint8)
    res["tf_version"] = np.array(tf.__version__)
    np.savez(out, **res)


def tiny_checkpoint_values() -> dict[str, np.ndarray]:
    """The variables of the tiny test checkpoint (deterministic, so the test can rebuild them)."""
    vals: dict[str, np.ndarray] = {
        "dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "half": np.array([0.5, -2.0, 65504.0, 1e-3], dtype=np.float16),
        "double": np.array([[np.pi, -1.0], [1e300, 0.0]], dtype=np.float64),
        "step": np.array(123456789012, dtype=np.int64),
        "ints": np.array([-3, 0, 7, 2 ** 31 - 1, -2 ** 31], dtype=np.int32),
        "flags": np.array([True, False, True]),
        "bytes_u8": np.arange(250, 256, dtype=np.uint8),
        "scope/sub/conv/kernel": np.linspace(-1, 1, 3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4),
    }
    for i in range(TINY_VARS):
        vals[f"many/variable_with_a_long_name_{i:04d}"] = np.full((2,), i, dtype=np.float32)
    return vals


# ----------------------------------------------------------------------------- torch side (workspace)


def build_inputs(gtzan: Path | None, n_random: int = 8) -> tuple[np.ndarray, dict[str, slice], list[str]]:
    import librosa

    from src.musicnn import musicnn_input

    parts, spans, names = [], {}, []
    start = 0
    synth = musicnn_input(synthetic_music())[:2].astype(np.float16).astype(np.float32)
    parts.append(synth)
    spans["synthetic"] = slice(start, start + len(synth))
    start += len(synth)
    rng = np.random.default_rng(0)
    rand = rng.uniform(0.0, 4.5, size=(n_random, 187, 96)).astype(np.float32)
    parts.append(rand)
    spans["random"] = slice(start, start + n_random)
    start += n_random
    if gtzan is not None:
        clips = sorted(gtzan.glob("*/*.wav"))
        for c in clips:
            y, _ = librosa.load(str(c), sr=16000, offset=12.0, duration=6.2)
            p = musicnn_input(y)[:2]
            parts.append(p)
            names += [c.name] * len(p)
        spans["gtzan"] = slice(start, start + len(names))
    return np.concatenate(parts), spans, names


def compare(x: np.ndarray, spans: dict[str, slice], tf_res: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    import torch

    from src.musicnn import load_musicnn

    torch.set_num_threads(2)
    report: dict[str, dict[str, float]] = {}
    for name in MODELS:
        net = load_musicnn(name)
        ekey = "flat" if name.endswith("vgg") else "penultimate"
        with torch.no_grad():
            f = net.features(torch.from_numpy(x))
            f64 = net.double().features(torch.from_numpy(x).double())  # arbiter: who is closer to exact?
        probs = torch.sigmoid(f["logits"]).numpy()
        emb = f[ekey].numpy()
        p64, e64 = torch.sigmoid(f64["logits"]).numpy(), f64[ekey].numpy()
        row: dict[str, float] = {
            "f64/probs_tf": float(np.abs(tf_res[f"{name}/probs"] - p64).max()),
            "f64/probs_port": float(np.abs(probs - p64).max()),
            "f64/emb_tf": float(np.abs(tf_res[f"{name}/embedding"] - e64).max()),
            "f64/emb_port": float(np.abs(emb - e64).max()),
        }
        for part, sl in spans.items():
            row[f"probs/{part}"] = float(np.abs(probs[sl] - tf_res[f"{name}/probs"][sl]).max())
            row[f"embedding/{part}"] = float(np.abs(emb[sl] - tf_res[f"{name}/embedding"][sl]).max())
            row[f"logits/{part}"] = float(np.abs(f["logits"].numpy()[sl] - tf_res[f"{name}/logits"][sl]).max())
        if not name.endswith("vgg"):
            for k in ("mean_pool", "max_pool"):
                row[k] = float(np.abs(f[k].numpy() - tf_res[f"{name}/{k}"]).max())
        row["embedding_scale"] = float(np.abs(tf_res[f"{name}/embedding"]).max())
        report[name] = row
    return report


def package_extractor_check(gtzan: Path, tf_res: dict[str, np.ndarray]) -> None:
    """The package's own spectrogram vs ``musicnn_input`` on a quiet and a loud clip (same librosa load)."""
    import librosa
    import torch

    from src.musicnn import load_musicnn, musicnn_input

    net = load_musicnn("MSD_musicnn")
    print(f"\nThe package's extractor.batch_data under NumPy {tf_res.get('tf_numpy_version')} vs musicnn_input:")
    for key, rel in (("quiet", "classical/classical.00001.wav"), ("loud", "blues/blues.00000.wav")):
        if f"pkg_{key}/batch" not in tf_res:
            continue
        pkg_batch, pkg_probs = tf_res[f"pkg_{key}/batch"], tf_res[f"pkg_{key}/probs"]
        y, _ = librosa.load(str(gtzan / rel), sr=16000)
        ours = musicnn_input(y)
        with torch.no_grad():
            our_probs = torch.sigmoid(net(torch.from_numpy(ours))).numpy()
        finite = np.isfinite(pkg_batch)
        inner = finite.copy()
        inner[0, :2] = False  # the first STFT frames: librosa >= 0.10 pads with zeros, training (librosa 0.6/0.7) reflected
        print(f"  {rel} ({key}): package patches {pkg_batch.shape}, non-finite bins {int((~finite).sum())} "
              f"({(~finite).mean():.2%}); max |input diff| {np.abs(pkg_batch[inner] - ours[inner]).max():.1e} on finite bins "
              f"after the first 2 frames (the package rounds the log to float16), "
              f"{np.abs(pkg_batch[finite] - ours[finite]).max():.1e} with them (zero vs reflect STFT padding)")
        bad = ~np.isfinite(pkg_probs).all(axis=1)
        ok = ~bad
        ok[0] = False  # the first patch holds the differently padded frames
        diff = f"{np.abs(pkg_probs[ok] - our_probs[ok]).max():.1e}" if ok.any() else "n/a"
        spread = f"{np.ptp(pkg_probs[~bad], axis=0).max():.1e}" if (~bad).sum() > 1 else "n/a"
        print(f"    package output non-finite in {int(bad.sum())} of {len(bad)} patches; tag probabilities max |diff| "
              f"{diff} on the other patches after the first; package patch-to-patch spread of finite outputs {spread}")


def write_reference(x: np.ndarray, spans: dict[str, slice], tf_res: dict[str, np.ndarray]) -> None:
    sl = spans["synthetic"]
    ref: dict[str, np.ndarray] = {"synthetic_x": x[sl].astype(np.float16)}
    for name in MODELS:
        for k in ("probs", "logits", "embedding", "mean_pool", "max_pool"):
            if f"{name}/{k}" in tf_res:
                ref[f"{name}/{k}"] = tf_res[f"{name}/{k}"][sl].astype(np.float32)
    ref["tiny_index"], ref["tiny_data"] = tf_res["tiny_index"], tf_res["tiny_data"]
    ref["meta"] = np.array(json.dumps({"tf_version": str(tf_res["tf_version"]), "package": "musicnn==0.1.0",
                                       "synthetic": "scripts/verify_musicnn_tf.py:synthetic_music(seed=12), first 2 patches",
                                       "tiny_vars": TINY_VARS}))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **ref)
    print(f"\nwrote {REFERENCE.relative_to(ROOT)} ({REFERENCE.stat().st_size / 1024:.0f} KB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tf-python", default="/tmp/tfenv/bin/python", help="Python of the TensorFlow environment")
    ap.add_argument("--gtzan", default=str(ROOT.parent / "shared" / "data" / "gtzan_full30" / "genres_original"),
                    help="folder of <genre>/<clip>.wav (read only); '' to skip real audio")
    ap.add_argument("--write-reference", action="store_true", help=f"(re)write {REFERENCE.relative_to(ROOT)}")
    ap.add_argument("--tf-phase", nargs=2, metavar=("INPUTS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    gtzan = Path(args.gtzan) if args.gtzan and Path(args.gtzan).is_dir() else None
    if args.tf_phase:
        tf_phase(Path(args.tf_phase[0]), Path(args.tf_phase[1]), gtzan)
        return 0

    sys.path.insert(0, str(ROOT))
    x, spans, names = build_inputs(gtzan)
    print(f"{len(x)} patches: " + ", ".join(f"{k} {s.stop - s.start}" for k, s in spans.items()))
    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d) / "inputs.npz", Path(d) / "tf.npz"
        np.savez(inp, x=x)
        cmd = [args.tf_python, str(Path(__file__).resolve()), "--tf-phase", str(inp), str(out), "--gtzan", str(gtzan or "")]
        subprocess.run(cmd, check=True, cwd=d)
        tf_res = dict(np.load(out))
    print(f"TensorFlow {tf_res['tf_version']}")
    report = compare(x, spans, tf_res)
    print("\nmax |port - TF|        probabilities             embedding (penultimate; VGG: pool5)    pooled (mean/max)")
    for name, row in report.items():
        parts = [k.split("/")[1] for k in row if k.startswith("probs/")]
        pr = " ".join(f"{p}={row['probs/' + p]:.1e}" for p in parts)
        em = " ".join(f"{p}={row['embedding/' + p]:.1e}" for p in parts)
        po = f"{row['mean_pool']:.1e}/{row['max_pool']:.1e}" if "mean_pool" in row else "-"
        print(f"  {name:12s} {pr}   {em} (|emb| <= {row['embedding_scale']:.1f})   {po}")
    print("\nagainst the port run in float64 (the rounding of each float32 implementation):")
    for name, row in report.items():
        print(f"  {name:12s} probabilities: TF {row['f64/probs_tf']:.1e}, port {row['f64/probs_port']:.1e};  "
              f"embedding: TF {row['f64/emb_tf']:.1e}, port {row['f64/emb_port']:.1e}")
    if gtzan is not None:
        package_extractor_check(gtzan, tf_res)
    if args.write_reference:
        write_reference(x, spans, tf_res)
    worst_p = max(v for row in report.values() for k, v in row.items() if k.startswith("probs/"))
    worst_e = max(v for row in report.values() for k, v in row.items() if k.startswith("embedding/"))
    print(f"\nworst: probabilities {worst_p:.2e}, embedding {worst_e:.2e}")
    return 0 if worst_p < 1e-5 and worst_e < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
