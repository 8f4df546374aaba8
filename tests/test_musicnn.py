"""musicnn port (src/musicnn.py) and the TensorBundle reader (src/tf_checkpoint.py), without TensorFlow.

The reference ``tests/data/musicnn_reference.npz`` was written by ``scripts/verify_musicnn_tf.py
--write-reference``: two 3-s log-mel patches of synthetic music (fixed seed, no real audio) with the
original TensorFlow graph's tag probabilities, logits, penultimate embeddings and pooled features for
the four models, and a tiny checkpoint saved by TensorFlow 2.21 (``tiny_index`` / ``tiny_data``).
Tests that need the pretrained weights skip when the ``musicnn`` package is not installed
(``pip install --no-deps -r requirements-nodeps.txt``); CI installs it.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from src.errors import PretrainedError
from src.musicnn import (
    INPUT,
    MODELS,
    MusiCNN,
    build_musicnn,
    convert,
    create_musicnn,
    layer_groups,
    load_musicnn,
    musicnn_input,
    tags,
    weights_path,
)
from src.tf_checkpoint import CheckpointFormatError, TensorBundle, crc32c, mask_crc, unmask_crc

pytestmark = pytest.mark.usefixtures("two_torch_threads")

ROOT = Path(__file__).resolve().parent.parent
REF = np.load(ROOT / "tests" / "data" / "musicnn_reference.npz")
HAVE_PACKAGE = importlib.util.find_spec("musicnn") is not None
needs_package = pytest.mark.skipif(not HAVE_PACKAGE, reason="musicnn weights not installed: "
                                   "pip install --no-deps -r requirements-nodeps.txt")


def test_weights_installed_where_required():
    """CI sets MUSICNN_REQUIRED=1 after `pip install --no-deps -r requirements-nodeps.txt`: no silent skips there."""
    if os.environ.get("MUSICNN_REQUIRED") == "1":
        assert HAVE_PACKAGE, "MUSICNN_REQUIRED=1 but musicnn is not installed: pip install --no-deps -r requirements-nodeps.txt"


def _verify_script():
    spec = importlib.util.spec_from_file_location("verify_musicnn_tf", ROOT / "scripts" / "verify_musicnn_tf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def wdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four models converted once into a fresh weights folder."""
    if not HAVE_PACKAGE:
        pytest.skip("musicnn weights not installed: pip install --no-deps -r requirements-nodeps.txt")
    d = tmp_path_factory.mktemp("musicnn_weights")
    for name in MODELS:
        convert(name, weights_dir=d)
    return d


def _package_dir() -> Path:
    import musicnn

    return Path(musicnn.__file__).parent


# ----------------------------------------------------------------------------- the reader


def _tiny_files(tmp_path: Path) -> Path:
    (tmp_path / "tiny.index").write_bytes(REF["tiny_index"].tobytes())
    (tmp_path / "tiny.data-00000-of-00001").write_bytes(REF["tiny_data"].tobytes())
    return tmp_path / "tiny"


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(range(256)) * 3 + b"xyz") == crc32c(bytearray(bytes(range(256)) * 3 + b"xyz"))
    assert unmask_crc(mask_crc(0xDEADBEEF)) == 0xDEADBEEF


def test_reader_reads_a_checkpoint_written_by_tensorflow(tmp_path: Path):
    expected = _verify_script().tiny_checkpoint_values()
    prefix = _tiny_files(tmp_path)
    for bundle in (TensorBundle(prefix), TensorBundle(str(prefix) + ".index"),
                   TensorBundle.from_bytes(REF["tiny_index"].tobytes(), [REF["tiny_data"].tobytes()])):
        assert bundle.names() == sorted(expected)
        for name, want in expected.items():
            got = bundle.read(name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want, err_msg=name)
    assert bundle.num_shards == 1


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not out[-1] & 0x80:
            return bytes(out)


def _sstable(entries: list[tuple[bytes, bytes]], per_block: int, restart_every: int = 4) -> bytes:
    """A LevelDB table of ``entries`` with ``per_block`` entries per data block (TF writes 256 KB blocks, so
    its real checkpoints have one; this exercises the multi-block index walk and prefix compression)."""
    out = bytearray()

    def block(items: list[tuple[bytes, bytes]]) -> tuple[int, int]:
        body, prev, restarts = bytearray(), b"", []
        for i, (k, v) in enumerate(items):
            shared = 0
            if i % restart_every:
                while shared < min(len(prev), len(k)) and prev[shared] == k[shared]:
                    shared += 1
            else:
                restarts.append(len(body))
            body += _varint(shared) + _varint(len(k) - shared) + _varint(len(v)) + k[shared:] + v
            prev = k
        for r in restarts or [0]:
            body += r.to_bytes(4, "little")
        body += len(restarts or [0]).to_bytes(4, "little")
        handle = (len(out), len(body))
        out.extend(body + b"\0" + mask_crc(crc32c(bytes(body) + b"\0")).to_bytes(4, "little"))
        return handle

    index = []
    for i in range(0, len(entries), per_block):
        off, size = block(entries[i:i + per_block])
        index.append((entries[min(i + per_block, len(entries)) - 1][0], _varint(off) + _varint(size)))
    meta = block([])
    idx = block(index)
    footer = _varint(meta[0]) + _varint(meta[1]) + _varint(idx[0]) + _varint(idx[1])
    return bytes(out) + footer.ljust(40, b"\0") + (0xDB4775248B80FB57).to_bytes(8, "little")


def test_reader_walks_a_multi_block_index():
    from src.tf_checkpoint import FOOTER_SIZE, _block, _block_entries, _handle

    index = REF["tiny_index"].tobytes()
    footer = index[-FOOTER_SIZE:]
    _, _, pos = _handle(footer)
    off, size, _ = _handle(footer, pos)
    entries = []
    for _, h in _block_entries(_block(index, off, size, "t"), "t"):
        o, n, _ = _handle(h)
        entries += list(_block_entries(_block(index, o, n, "t"), "t"))
    assert len(entries) > 100
    repacked = _sstable(entries, per_block=17)
    a = TensorBundle.from_bytes(index, [REF["tiny_data"].tobytes()])
    b = TensorBundle.from_bytes(repacked, [REF["tiny_data"].tobytes()])
    assert a.entries == b.entries and len(b.entries) == len(entries) - 1  # minus the header entry


def test_reader_rejects_truncated_and_corrupt_files(tmp_path: Path):
    prefix = _tiny_files(tmp_path)
    index, data = REF["tiny_index"].tobytes(), REF["tiny_data"].tobytes()
    with pytest.raises(CheckpointFormatError, match="magic|too short"):
        TensorBundle.from_bytes(index[:-10], [data])
    flipped = bytearray(index)
    flipped[40] ^= 0xFF
    with pytest.raises(CheckpointFormatError, match="CRC"):
        TensorBundle.from_bytes(bytes(flipped), [data])
    name = "scope/sub/conv/kernel"
    e = TensorBundle(prefix).entry(name)
    bad = bytearray(data)
    bad[e.offset + 5] ^= 0x01
    with pytest.raises(CheckpointFormatError, match="CRC32C"):
        TensorBundle.from_bytes(index, [bytes(bad)]).read(name)
    assert TensorBundle.from_bytes(index, [bytes(bad)], verify=False).read(name).shape == (3, 3, 2, 4)
    (tmp_path / "tiny.data-00000-of-00001").write_bytes(data[: e.offset + 3])
    with pytest.raises(CheckpointFormatError, match="truncated"):
        TensorBundle(prefix).read(name)
    (tmp_path / "tiny.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointFormatError, match="not found"):
        TensorBundle(prefix)
    with pytest.raises(CheckpointFormatError, match="not found"):
        TensorBundle(tmp_path / "nothing")


# ----------------------------------------------------------------------------- conversion vs TensorFlow


@needs_package
@pytest.mark.parametrize("name", MODELS)
def test_conversion_matches_tensorflow_reference(wdir: Path, name: str):
    net = load_musicnn(name, weights_dir=wdir)
    assert not net.training
    x = torch.from_numpy(REF["synthetic_x"].astype(np.float32))
    with torch.no_grad():
        f = net.features(x)
    probs = torch.sigmoid(f["logits"]).numpy()
    emb = net.embed(x).detach().numpy()
    # measured against TF 2.21 (oneDNN off): probabilities <= 2e-7, embeddings <= 3e-6
    np.testing.assert_allclose(probs, REF[f"{name}/probs"], atol=5e-6, rtol=0)
    np.testing.assert_allclose(f["logits"].numpy(), REF[f"{name}/logits"], atol=2e-4, rtol=0)
    np.testing.assert_allclose(emb, REF[f"{name}/embedding"], atol=5e-5, rtol=0)
    if not name.endswith("vgg"):
        np.testing.assert_allclose(f["mean_pool"].numpy(), REF[f"{name}/mean_pool"], atol=1e-3, rtol=1e-5)
        np.testing.assert_allclose(f["max_pool"].numpy(), REF[f"{name}/max_pool"], atol=2e-3, rtol=1e-5)


@needs_package
@pytest.mark.parametrize("name", ["MSD_musicnn", "MTT_musicnn"])
def test_top_tags_of_synthetic_fixture_are_stable(wdir: Path, name: str):
    net = load_musicnn(name, weights_dir=wdir)
    x = torch.from_numpy(REF["synthetic_x"].astype(np.float32))
    with torch.no_grad():
        ours = torch.sigmoid(net(x)).mean(0).numpy()
    want = REF[f"{name}/probs"].mean(0)
    top = lambda p: [tags(name)[i] for i in np.argsort(-p)[:5]]  # noqa: E731
    assert top(ours) == top(want)


def test_input_recipe_reproduces_the_stored_patches():
    """The spectrogram recipe (librosa, float16-rounded power, float32 log) still gives the reference patches."""
    y = _verify_script().synthetic_music()
    x = musicnn_input(y)
    assert x.shape == (2, 187, 96) and x.dtype == np.float32
    np.testing.assert_allclose(x, REF["synthetic_x"].astype(np.float32), atol=5e-3, rtol=0)  # stored as float16
    assert np.isfinite(x).all()
    # loud audio does not overflow (the package's extractor gives inf under NumPy 2)
    loud = np.clip(y * 4, -1, 1)
    assert np.isfinite(musicnn_input(loud)).all()


def test_input_patching():
    sr = INPUT["sample_rate"]
    y = np.random.default_rng(0).standard_normal(sr * 10).astype(np.float32) * 0.1
    frames = 1 + len(y) // INPUT["hop_length"]
    assert musicnn_input(y).shape == ((frames - 187) // 187 + 1, 187, 96)
    assert musicnn_input(y, hop=93).shape[0] == (frames - 187) // 93 + 1
    short = musicnn_input(y[: sr // 2])  # 0.5 s: repeat-padded to one patch
    assert short.shape == (1, 187, 96)
    with pytest.raises(ValueError, match="16000"):
        musicnn_input(y, sr=22050)


# ----------------------------------------------------------------------------- weights: cache and errors


@needs_package
def test_converted_weights_are_cached_and_reused(wdir: Path, monkeypatch: pytest.MonkeyPatch):
    from safetensors import safe_open

    path = weights_path("MSD_musicnn", wdir)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["model"] == "MSD_musicnn"
    import src.musicnn as m

    def no_checkpoint(*a, **k):
        raise AssertionError("the TF checkpoint was read again")

    monkeypatch.setattr(m, "read_tf_checkpoint", no_checkpoint)
    assert isinstance(load_musicnn("MSD_musicnn", weights_dir=wdir), MusiCNN)


def test_missing_package_gives_install_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "musicnn", None)  # import musicnn -> ImportError
    with pytest.raises(PretrainedError) as e:
        load_musicnn("MSD_musicnn", weights_dir=tmp_path)
    assert "pip install --no-deps -r requirements-nodeps.txt" in str(e.value)
    assert "not installed" in e.value.what
    with pytest.raises(PretrainedError, match="unknown musicnn model"):
        load_musicnn("MSD_resnet", weights_dir=tmp_path)


@needs_package
def test_truncated_or_corrupt_checkpoint_gives_clear_error(tmp_path: Path):
    src = tmp_path / "ckpt"
    shutil.copytree(_package_dir() / "MSD_musicnn", src)
    data = src / ".data-00000-of-00001"
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PretrainedError, match="truncated") as e:
        load_musicnn("MSD_musicnn", weights_dir=tmp_path / "w", source=src)
    assert "pip install" in str(e.value)
    e = TensorBundle(src).entry("conv2d_1/kernel")
    bad = bytearray(raw)
    bad[e.offset + e.size // 2] ^= 0x40
    data.write_bytes(bytes(bad))
    with pytest.raises(PretrainedError, match="CRC"):
        load_musicnn("MSD_musicnn", weights_dir=tmp_path / "w", source=src)
    (src / ".index").write_bytes((src / ".index").read_bytes()[:100])
    with pytest.raises(PretrainedError, match="index"):
        load_musicnn("MSD_musicnn", weights_dir=tmp_path / "w", source=src)
    assert not (tmp_path / "w" / "MSD_musicnn.safetensors").exists()  # nothing half-converted left behind


@needs_package
def test_corrupt_converted_file_is_rebuilt_or_reported(wdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "MTT_musicnn.safetensors"
    path.write_bytes(weights_path("MTT_musicnn", wdir).read_bytes()[:5000])  # truncated
    net = load_musicnn("MTT_musicnn", weights_dir=tmp_path)  # rebuilt from the installed package
    ref = load_musicnn("MTT_musicnn", weights_dir=wdir)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))
    path.write_bytes(b"\0" * 100)
    monkeypatch.setitem(sys.modules, "musicnn", None)
    with pytest.raises(PretrainedError, match="unusable") as e:
        load_musicnn("MTT_musicnn", weights_dir=tmp_path)
    assert "requirements-nodeps.txt" in str(e.value)


@needs_package
def test_weights_from_a_wheel_file(wdir: Path, tmp_path: Path):
    whl = tmp_path / "musicnn-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for f in ("MSD_vgg/.index", "MSD_vgg/.data-00000-of-00001"):
            z.write(_package_dir() / f, f"musicnn/{f}")
    net = load_musicnn("MSD_vgg", weights_dir=tmp_path / "w", source=whl)
    ref = load_musicnn("MSD_vgg", weights_dir=wdir)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))
    assert (tmp_path / "w" / "MSD_vgg.safetensors").is_file()


# ----------------------------------------------------------------------------- model API


@pytest.mark.parametrize("name", MODELS)
def test_layer_groups_cover_every_parameter_once(name: str):
    net = build_musicnn(name)
    groups = layer_groups(net)
    assert [g for g, _ in groups] == ["frontend", "midend", "backend", "head"]
    ids = [id(p) for _, ps in groups for _, p in ps]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))
    assert all(ps for _, ps in groups)
    from src.transfer import layer_groups as transfer_groups  # the workspace's freezing / layer decay

    tg = transfer_groups(net)
    assert [[n for n, _ in g] for g in tg] == [[n for n, _ in ps] for _, ps in groups]


@pytest.mark.parametrize("name", ["MSD_musicnn", "MSD_vgg"])
def test_replace_head_and_input_layouts(name: str):
    torch.manual_seed(0)
    net = build_musicnn(name).eval()
    x = torch.rand(3, 187, 96) * 4
    emb = net.embed(x)
    body = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("head.")}
    net.replace_head(7)
    assert net.num_classes == 7 and net(x).shape == (3, 7)
    assert torch.equal(net.embed(x), emb)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in body.items())
    ws = x.transpose(1, 2).unsqueeze(1)  # the workspace's (B, 1, n_mels, T)
    torch.testing.assert_close(net(ws), net(x))
    with pytest.raises(ValueError, match="input must be"):
        net(torch.rand(2, 96, 187))


def test_shapes_and_variable_length():
    net = MusiCNN().eval()
    for t in (64, 187, 300):
        f = net.features(torch.rand(2, t, 96))
        assert f["logits"].shape == (2, 50) and f["penultimate"].shape == (2, 200)
        assert f["mean_pool"].shape == f["max_pool"].shape == (2, 753)
        assert f["timbral"].shape == (2, t, 408) and f["temporal"].shape == (2, t, 153) and f["cnn3"].shape == (2, t, 64)
    vgg = build_musicnn("MTT_vgg").eval()
    assert vgg.embed(torch.rand(1, 187, 96)).shape == (1, 256)
    with pytest.raises(ValueError, match="187-frame"):
        vgg(torch.rand(1, 200, 96))
    assert len(tags("MSD_musicnn")) == len(tags("MTT_vgg")) == 50 and "blues" in tags("MSD_musicnn")


def test_tf_same_padding_of_even_kernels():
    """A temporal conv of k frames sees (k-1)//2 frames before and the rest after (TF 'same')."""
    net = MusiCNN().eval()
    assert [b.pad for b in net.temporal] == [(63, 64), (31, 32), (15, 16)]
    assert [b.conv.kernel_size for b in net.timbral] == [(7, 38), (7, 67)]


def test_fine_tuning_step_reaches_every_group():
    torch.manual_seed(0)
    net = build_musicnn("MSD_musicnn", num_classes=4).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(net(torch.rand(4, 187, 96) * 4), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for g, ps in layer_groups(net):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in ps), g
    opt.step()


@needs_package
def test_tag_lists_match_the_package():
    from musicnn import configuration  # plain constants, no TensorFlow import

    assert tags("MSD_musicnn") == configuration.MSD_LABELS
    assert tags("MTT_musicnn") == configuration.MTT_LABELS
    assert (configuration.SR, configuration.FFT_SIZE, configuration.FFT_HOP, configuration.N_MELS) == (
        INPUT["sample_rate"], INPUT["n_fft"], INPUT["hop_length"], INPUT["n_mels"])


@needs_package
def test_registry_builder(wdir: Path):
    net = create_musicnn("MSD_musicnn", num_classes=10, input_shape=(96, 129), weights_dir=wdir)
    assert net.num_classes == 10 and net(torch.rand(2, 1, 96, 129)).shape == (2, 10)
    ref = load_musicnn("MSD_musicnn", weights_dir=wdir)
    assert torch.equal(net.dense.weight, ref.dense.weight)  # the body is pretrained
    assert create_musicnn("MTT_vgg", 3, pretrained=False).num_classes == 3
    with pytest.raises(ValueError, match="needs musicnn log-mel"):
        create_musicnn("MSD_musicnn", 10, input_shape=(128, 130), weights_dir=wdir)
    with pytest.raises(ValueError, match="needs musicnn log-mel"):
        create_musicnn("MSD_vgg", 10, input_shape=(96, 130), weights_dir=wdir)
    with pytest.raises(ValueError, match="in_chans"):
        create_musicnn("MSD_musicnn", 10, in_chans=3, weights_dir=wdir)
