"""No weights file runs code, and weights are what they claim.

A planted zip (a pickle whose payload opens a marker file for writing, plus a `constants.pkl` in a
sub-folder, which once passed for TorchScript) is offered through every path by which a file a
user names becomes tensors: CLIP weights through load_model and through affect_node's `model`
(a checkpoint naming it) and `clip_weights` parameters, BHGap's encoder weights, a checkpoint's
weights, the converted default weights. Each is refused with the file named, and the marker
never appears. Converted weights carry a sha256 that loading checks; duse-fetch-weights repairs.
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import rclpy
import torch
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from safetensors.torch import load_file, save_file

from duse_ros.checkpoint import SHA256_KEY, CheckpointError, save_checkpoint
from duse_ros.loading import load_model
from duse_ros.models import build_model
from duse_ros.models.clip_backbone import create_frozen_clip
from duse_ros.models.weight_files import WeightFileError, is_torchscript, read_state_dict
from duse_ros.weights import FER2013, WeightsError, converted_path, default_weights_dir, verify_installed
from duse_ros.weights import main as fetch_weights


class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling creates the marker file


def plant_zip(path: Path, marker: Path) -> Path:
    """A torch-style archive whose data.pkl runs code, with constants.pkl in a sub-folder."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Payload(marker), protocol=2))
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/x/constants.pkl", pickle.dumps(()))
    return path


@pytest.fixture
def planted(tmp_path):
    marker = tmp_path / "PWNED"
    yield plant_zip(tmp_path / "evil.pt", marker), marker
    assert not marker.exists(), "a weights file ran code"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:'torch.load' received a zip file")
def test_torchscript_is_recognised_as_torch_recognises_it(tmp_path, planted):
    evil, _ = planted
    real = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), real)
    plain = tmp_path / "state.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), plain)
    assert is_torchscript(real) and not is_torchscript(plain) and not is_torchscript(evil)
    # torch.load agrees: it hands the real archive to torch.jit.load and refuses it with
    # weights_only=True; the planted zip is an ordinary pickle to it.
    with pytest.raises(RuntimeError, match="TorchScript"):
        torch.load(real, weights_only=True)
    assert set(read_state_dict(real, "scripted")) == {"weight", "bias"}


def test_planted_zip_as_clip_weights_through_load_model(planted):
    evil, _ = planted
    with pytest.raises(WeightFileError, match=r"CLIP weights .*evil.pt.* cannot be read as tensors.*weights_only=True"):
        load_model("duse-tiny", clip_weights=str(evil))


def test_planted_zip_named_by_a_checkpoint_json(tmp_path, planted):
    evil, _ = planted
    ckpt = save_checkpoint(build_model("duse-tiny"), tmp_path / "ck" / "duse.json")
    config = json.loads(ckpt.read_text())
    config["clip_weights"] = str(evil)
    ckpt.write_text(json.dumps(config))
    with pytest.raises(WeightFileError, match="evil.pt"):
        load_model(str(ckpt))


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.mark.parametrize("via", ["model", "clip_weights"])
def test_affect_node_refuses_a_planted_zip_at_configure(tmp_path, planted, ros, via):
    from duse_ros.nodes.affect_node import AffectNode

    evil, _ = planted
    if via == "model":  # a checkpoint whose JSON names the zip as its CLIP
        ckpt = save_checkpoint(build_model("duse-tiny"), tmp_path / "ck" / "duse.json")
        config = json.loads(ckpt.read_text())
        config["clip_weights"] = str(evil)
        ckpt.write_text(json.dumps(config))
        params = [Parameter("model", value=str(ckpt))]
    else:
        params = [Parameter("model", value="duse-tiny"), Parameter("clip_weights", value=str(evil))]
    node = AffectNode(parameter_overrides=[*params, Parameter("autostart", value=False)])
    try:
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.parametrize("key", ["visual_weights", "audio_weights"])
def test_planted_zip_as_bhgap_encoder_weights(planted, key):
    evil, _ = planted
    with pytest.raises(ValueError, match=f"{key} .*evil.pt.* cannot be read as tensors"):
        load_model("bhgap-tiny", **{key: str(evil)})


def test_planted_zip_as_a_checkpoints_weights(tmp_path, planted):
    evil, _ = planted
    ckpt = save_checkpoint(build_model("tiny-random-video"), tmp_path / "tiny.json")
    shutil.copy(evil, ckpt.with_suffix(".safetensors"))
    with pytest.raises(CheckpointError, match="tiny.safetensors has sha256 .* the checkpoint records"):
        load_model(str(ckpt))
    config = json.loads(ckpt.read_text())
    del config[SHA256_KEY]  # a checkpoint from before hashes were recorded: still no code runs
    ckpt.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model(str(ckpt))


@pytest.mark.parametrize(("training", "untrained"), [(None, False), ({"epoch": 3}, False), ({"epoch": 0}, True)])
def test_a_checkpoint_of_zero_epochs_is_flagged_untrained(tmp_path, training, untrained):
    # `epochs: 0` saves the initial, random trainable weights as best.json (training/train.py)
    ckpt = save_checkpoint(build_model("tiny-random-video"), tmp_path / "tiny.json", extra=training)
    assert load_model(str(ckpt)).untrained is untrained


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """The installed default weights (and the kept original) copied to a folder a test may damage."""
    installed = default_weights_dir()
    assert converted_path(FER2013.name, installed).is_file(), "`make setup` installs the default weights"
    folder = tmp_path / "weights"
    shutil.copytree(installed, folder)
    monkeypatch.setenv("DUSE_ROS_WEIGHTS", str(folder))
    assert verify_installed(FER2013, folder) is None
    return folder


def test_planted_zip_as_the_converted_weights(weights_copy, planted):
    evil, _ = planted
    shutil.copy(evil, converted_path(FER2013.name, weights_copy).with_suffix(".safetensors"))
    with pytest.raises(WeightsError, match="sha256 .*duse-fetch-weights"):
        load_model(FER2013.name)


def _edit_converted(folder: Path, edit) -> Path:
    path = converted_path(FER2013.name, folder).with_suffix(".safetensors")
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))
    return path


def test_converted_weights_with_swapped_class_rows_or_a_flipped_bit_are_refused(weights_copy):
    def swap(tensors):  # happiness and sadness trade places in the head
        w = tensors["net.head.weight"]
        w[[3, 4]] = w[[4, 3]]

    _edit_converted(weights_copy, swap)
    with pytest.raises(WeightsError, match="has sha256 .* the checkpoint records"):
        load_model(FER2013.name)
    path = converted_path(FER2013.name, weights_copy).with_suffix(".safetensors")
    assert fetch_weights(["--dir", str(weights_copy)]) == 0  # repaired from the kept original
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="has sha256"):
        load_model(FER2013.name)


def test_fetch_weights_verifies_and_repairs(weights_copy, capsys, tmp_path):
    assert fetch_weights(["--dir", str(weights_copy)]) == 0
    assert "ready (verified)" in capsys.readouterr().out

    _edit_converted(weights_copy, lambda t: t["net.head.bias"].fill_(float("nan")))
    assert verify_installed(FER2013, weights_copy) is not None
    assert fetch_weights(["--dir", str(weights_copy)]) == 0
    assert "ready (repaired (" in capsys.readouterr().out
    assert verify_installed(FER2013, weights_copy) is None
    load_model(FER2013.name)

    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"\x89HDF\r\n" + bytes(range(256)) * 64)
    assert fetch_weights(["--dir", str(weights_copy), "--from", str(junk)]) == 1
    assert "refusing to convert it" in capsys.readouterr().err


def test_old_format_weights_without_a_hash_are_refused_and_repaired(weights_copy, capsys):
    """A venv set up before hashes were recorded: loading names the command, which repairs."""
    json_path = converted_path(FER2013.name, weights_copy)
    config = json.loads(json_path.read_text())
    del config[SHA256_KEY]
    json_path.write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=f"records no {SHA256_KEY}.*duse-fetch-weights"):
        load_model(FER2013.name)
    assert fetch_weights(["--dir", str(weights_copy)]) == 0
    assert "repaired" in capsys.readouterr().out
    assert json.loads(json_path.read_text())[SHA256_KEY]
    load_model(FER2013.name)


def test_non_finite_checkpoint_weights_name_the_file_and_tensor(tmp_path):
    ckpt = save_checkpoint(build_model("tiny-random-video"), tmp_path / "tiny.json")
    weights = ckpt.with_suffix(".safetensors")
    tensors = load_file(str(weights))
    key = sorted(tensors)[0]
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(weights))
    config = json.loads(ckpt.read_text())
    del config[SHA256_KEY]
    ckpt.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"tiny.safetensors: tensor '{key}' holds 1 non-finite"):
        load_model(str(ckpt))


def test_non_finite_clip_weights_are_refused(tmp_path):
    clip = create_frozen_clip("DuSE-Tiny")
    state = {k: v.clone().contiguous() for k, v in clip.state_dict().items()}
    state["visual.proj"][0, 0] = float("inf")
    path = tmp_path / "clip.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightFileError, match=r"clip.safetensors.*'visual.proj' holds 1 non-finite"):
        create_frozen_clip("DuSE-Tiny", str(path))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_a_real_torchscript_clip_loads(tmp_path):
    """OpenAI's CLIP files are TorchScript: such an archive still loads, through torch.jit.load."""
    clip = create_frozen_clip("DuSE-Tiny")
    size = clip.visual.image_size[0]
    traced = torch.jit.trace(
        clip, (torch.zeros(1, 3, size, size), torch.zeros(1, 77, dtype=torch.long)), check_trace=False, strict=False
    )
    path = tmp_path / "clip_ts.pt"
    torch.jit.save(traced, path)
    loaded = create_frozen_clip("DuSE-Tiny", str(path))
    for key, value in clip.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_absurd_config_sizes_are_refused_before_allocating():
    with pytest.raises(ValueError, match=r"would hold 9e\+10 parameters \(360 GB.*stem_width"):
        build_model({"name": "typo", "arch": "minixception", "class_set": "fer2013", "stem_width": 1e5})


def test_the_size_check_builds_each_configuration_once_on_the_meta_device(monkeypatch):
    from duse_ros.models import registry

    monkeypatch.setattr(registry, "_COUNTS", {})
    builds: list[str] = []
    minixception = registry._ARCHS["minixception"]

    def counted(config):
        model = minixception(config)
        builds.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setitem(registry._ARCHS, "minixception", counted)
    config = {"name": "small", "arch": "minixception", "class_set": "fer2013", "stem_width": 8}
    models = [build_model(config) for _ in range(3)]
    assert builds == ["meta", "cpu", "cpu", "cpu"]  # counted once, built three times
    assert registry.parameter_count(config) == sum(t.numel() for t in (*models[0].parameters(), *models[0].buffers()))
    wider = build_model({**config, "stem_width": 16})
    assert builds[-2:] == ["meta", "cpu"]  # another configuration: counted afresh
    assert registry.parameter_count({**config, "stem_width": 16}) > registry.parameter_count(config)
    assert sum(p.numel() for p in wider.parameters()) > sum(p.numel() for p in models[0].parameters())
    absurd = {**config, "stem_width": 1e5}
    for _ in range(2):  # refused again from the remembered count, nothing built
        with pytest.raises(ValueError, match=r"would hold 9e\+10 parameters"):
            build_model(absurd)
    assert builds.count("meta") == 3


def test_affect_node_refuses_non_finite_weights_at_configure_naming_the_file(tmp_path, ros, capfd):
    from duse_ros.nodes.affect_node import AffectNode

    ckpt = save_checkpoint(build_model("tiny-random-video"), tmp_path / "nan.json")
    weights = ckpt.with_suffix(".safetensors")
    tensors = load_file(str(weights))
    tensors["head.weight"].view(-1)[0] = float("nan")
    save_file(tensors, str(weights))
    config = json.loads(ckpt.read_text())
    del config[SHA256_KEY]  # a hand-made checkpoint: the finite check is what speaks
    ckpt.write_text(json.dumps(config))
    node = AffectNode(parameter_overrides=[Parameter("model", value=str(ckpt)), Parameter("autostart", value=False)])
    try:
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
    finally:
        node.close()
        node.destroy_node()
    assert "nan.safetensors: tensor 'head.weight' holds 1 non-finite" in "".join(capfd.readouterr())
