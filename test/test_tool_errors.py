"""Bad input to duse-make-bag and duse-eval-bag: one clear line naming the file or the option, no
traceback, and no half-written bag left behind to block the next run."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from bag_fixtures import write_robot_bag, write_video

from duse_ros.io.rosbag import BagWriter, typestore
from duse_ros.tools import eval_bag, make_bag


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "talk.mov"
    write_video(path, seconds=4.0, fps=15)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(("duse-make-bag: error: ", "duse-eval-bag: error: ")), err
    return err


def run_make_bag(*args) -> int:
    return make_bag.main([*map(str, args), "-q"])


def test_a_video_damaged_mid_file_fails_and_leaves_no_bag(video, tmp_path, capsys):
    """A video track that stops decoding a tenth of the way in: the old reader wrote a bag of the
    frames before the damage (or fell back to OpenCV without the audio) and said nothing."""
    data = bytearray(video.read_bytes())
    at = len(data) // 10
    data[at : at + 200] = bytes(range(200))
    damaged = tmp_path / "damaged.mov"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "bag"
    assert run_make_bag(damaged, "-o", out) == 2
    err = one_line_error(capsys)
    assert f"{damaged}: video frame" in err and "cannot be decoded" in err and "damaged" in err
    assert not out.exists()
    assert run_make_bag(video, "-o", out) == 0  # the same -o works at once


def test_non_utf8_labels_and_clip_lists(video, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_bytes("start,end,label\n0,1,happiness\n# caf\xe9\n".encode("latin-1"))
    assert run_make_bag(video, "-o", tmp_path / "a", "--labels", labels) == 2
    assert f"{labels}: not UTF-8 text" in one_line_error(capsys)
    clips = tmp_path / "clips.txt"
    clips.write_bytes(b"clip_\xff 10 1\n")
    assert run_make_bag(clips, "--clip-list", "-o", tmp_path / "b") == 2
    assert f"{clips}: not UTF-8 text" in one_line_error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_times_and_sizes_a_bag_cannot_hold_are_refused(video, tmp_path, capsys):
    far = tmp_path / "far.csv"
    far.write_text("0,1e30,happiness\n")
    assert run_make_bag(video, "-o", tmp_path / "a", "--labels", far) == 2
    assert f"{far}:1: end 1e+30 s lies outside the times a bag can hold" in one_line_error(capsys)
    for option, value, message in (
        ("--start-time", "nan", "--start-time nan is not a bag time"),
        ("--start-time", "-5", "--start-time -5 is not a bag time"),
        ("--gap-s", "-5", "--gap-s -5: the time between clips must be 0 to 3600 s"),
        ("--audio-chunk-s", "0", "--audio-chunk-s 0: audio seconds per message must be 0.001 to 10"),
    ):
        assert run_make_bag(video, "-o", tmp_path / "b", option, value) == 2, option
        assert message in one_line_error(capsys)
        assert not (tmp_path / "b").exists()


class _ReadOnly(BagWriter):
    def __init__(self, path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))


class _FillsUp(BagWriter):
    def write(self, *args, **kwargs):
        self.writes = getattr(self, "writes", 0) + 1
        if self.writes > 10:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        super().write(*args, **kwargs)


@pytest.mark.parametrize("writer,message", [(_ReadOnly, "Read-only file system"), (_FillsUp, "No space left")])
def test_a_read_only_or_full_output_folder(video, tmp_path, capsys, monkeypatch, writer, message):
    monkeypatch.setattr(make_bag, "BagWriter", writer)
    out = tmp_path / "bag"
    assert run_make_bag(video, "-o", out) == 2
    err = one_line_error(capsys)
    assert f"cannot write {out}" in err and message in err
    assert not out.exists(), "a partial bag would block the next run"


def test_eval_bag_one_line_errors(tmp_path, capsys):
    bag = tmp_path / "bag"
    write_robot_bag(bag, "mcap", "compressed", None, seconds=1.0, extra_topics=False)

    def run(*extra) -> str:
        assert eval_bag.main([str(bag), "--model", "tiny-random-video", "-q", *map(str, extra)]) == 2
        return one_line_error(capsys)

    existing = tmp_path / "report.txt"
    existing.write_text("keep me")
    assert f"--out {existing} is an existing file" in run("--out", existing)
    assert existing.read_text() == "keep me"

    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"0,1,happiness\n0,2,sad\xe9\n")
    assert f"{labels}: not UTF-8 text" in run("--labels", labels, "--out", tmp_path / "o1")

    wrong = tmp_path / "wrong_label_type"
    store = typestore()
    write_robot_bag(wrong, "mcap", "compressed", None, seconds=1.0, extra_topics=False)
    relabelled = tmp_path / "relabelled"
    from duse_ros.io.rosbag import BagFile

    with BagFile(wrong) as src, BagWriter(relabelled, "mcap", store) as dst:
        for topic, msgtype, t, raw in src.messages():
            dst.write(topic, t, raw, msgtype)
        dst.write("/emotion_label", src.start_ns, store.types["std_msgs/msg/Float32"](data=1.0))
    bag = relabelled
    err = run("--out", tmp_path / "o2")
    assert "label topic /emotion_label has type std_msgs/msg/Float32, expected std_msgs/msg/String" in err


def test_a_failed_clip_list_leaves_an_existing_folder_as_it_was(video, tmp_path, capsys):
    data = bytearray(video.read_bytes())
    data[len(data) // 10 : len(data) // 10 + 200] = bytes(range(200))
    (tmp_path / "damaged.mov").write_bytes(bytes(data))
    (tmp_path / "good.mov").write_bytes(video.read_bytes())
    clips = tmp_path / "clips.txt"
    clips.write_text("good.mov 60 happiness\ndamaged.mov 60 sadness\n")
    out = tmp_path / "bags"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_make_bag(clips, "--clip-list", "--class-set", "dfew", "-o", out) == 2
    assert "damaged.mov: video frame" in one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
