"""duse-make-bag and the bag I/O behind both tools, without ROS processes: bags from a real video
with sound read back by two independent readers (rosbags and mcap-ros2-support), bags written the
way `ros2 bag record` writes them, labels, split and re-label, and bad input."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from bag_fixtures import write_robot_bag, write_video
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from duse_ros.io.images import IMAGE_MESSAGES
from duse_ros.io.labels import LabelError, Span, read_labels_csv, spans_from_messages, spans_to_messages
from duse_ros.io.rosbag import (
    AUDIO_DATA_STAMPED,
    AUDIO_STAMPED,
    LABEL_TOPIC,
    ORIGIN_KEY,
    BagFile,
    BagWriter,
    select_streams,
    typestore,
)
from duse_ros.timebase import NS
from duse_ros.tools import eval_bag, make_bag
from duse_ros.tools.bag_player import AudioAdapter
from duse_ros.tools.evaluate import NO_READING, score_states

ORIGIN = make_bag.DEFAULT_ORIGIN_S * NS


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "talk.mov"
    pcm = write_video(path)
    with av.open(str(path)) as c:  # the frame times as FFmpeg reports them, read independently
        times = [float(f.time) for f in c.decode(video=0)]
    return path, pcm, times


def run_make_bag(*args) -> int:
    return make_bag.main([str(a) for a in args] + ["-q"])


def _labels(bag: BagFile) -> list[tuple[int, str]]:
    return [(t, bag.deserialize(raw, "std_msgs/msg/String").data) for _, _, t, raw in bag.messages([LABEL_TOPIC])]


def test_video_with_sound_to_mcap_reads_back_with_rosbags_and_mcap(video, tmp_path):
    path, pcm, times = video
    csv = tmp_path / "spans.csv"
    csv.write_text("start,end,label\n0.0,1.0,happiness\n1.2,2.0,sadness\n")
    assert run_make_bag(path, "-o", tmp_path / "bag", "--labels", csv) == 0
    bag_dir = tmp_path / "bag"

    # rosbags: frame stamps are the video's own frame times; every audio sample is there, in order.
    with BagFile(bag_dir) as bag:
        assert bag.custom_data[ORIGIN_KEY] == str(ORIGIN)
        assert {t.name: t.msgtype for t in bag.topics.values()} == {
            "/image_raw": "sensor_msgs/msg/Image",
            "/audio": "duse_ros/msg/AudioChunk",
            LABEL_TOPIC: "std_msgs/msg/String",
        }
        assert all(t.qos and t.qos[0].reliability.name == "BEST_EFFORT" for t in bag.topics.values())
        frames = [bag.deserialize(raw, ty) for _, ty, _, raw in bag.messages(["/image_raw"])]
        chunks = [(log, bag.deserialize(raw, ty)) for _, ty, log, raw in bag.messages(["/audio"])]
        labels = _labels(bag)
        assert list(bag.messages(["/not_in_this_bag"])) == []  # a topic the bag lacks gives nothing, not everything
    assert len(frames) == len(times) == 30
    stamps = [f.header.stamp.sec * NS + f.header.stamp.nanosec for f in frames]
    assert stamps == [ORIGIN + int(round(t * NS)) for t in times]
    assert (frames[0].encoding, frames[0].width, frames[0].height) == ("bgr8", 160, 120)
    audio = np.concatenate([np.frombuffer(c.data.tobytes(), "<i2") for _, c in chunks]).reshape(-1, 2)
    np.testing.assert_array_equal(audio, pcm)
    assert all(c.sample_rate == 16000 and c.channels == 2 and c.sample_format == "S16LE" for _, c in chunks)
    firsts = np.cumsum([0] + [len(c.data) // 4 for _, c in chunks[:-1]])
    assert [c.header.stamp.sec * NS + c.header.stamp.nanosec for _, c in chunks] == [
        ORIGIN + int(k) * NS // 16000 for k in firsts
    ]
    assert labels == [
        (ORIGIN, "happiness"),
        (ORIGIN + NS, ""),
        (ORIGIN + 1_200_000_000, "sadness"),
        (ORIGIN + 2 * NS, ""),
    ]

    # mcap + mcap-ros2-support: a second reader decodes the same messages from the stored schemas.
    mcap_file = next(bag_dir.glob("*.mcap"))
    seen = {"/image_raw": [], "/audio": [], LABEL_TOPIC: []}
    with mcap_file.open("rb") as f:
        for _, channel, message, decoded in make_reader(
            f, decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages():
            seen[channel.topic].append((message.log_time, decoded))
    assert [m.header.stamp.sec * NS + m.header.stamp.nanosec for _, m in seen["/image_raw"]] == stamps
    assert [t for t, _ in seen["/image_raw"]] == stamps
    first = seen["/image_raw"][0][1]
    rgb = cv2.cvtColor(np.frombuffer(bytes(first.data), np.uint8).reshape(120, 160, 3), cv2.COLOR_BGR2RGB)
    with av.open(str(path)) as c:
        decoded = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    np.testing.assert_array_equal(rgb, decoded)
    mcap_audio = np.concatenate([np.frombuffer(bytes(m.data), "<i2") for _, m in seen["/audio"]]).reshape(-1, 2)
    np.testing.assert_array_equal(mcap_audio, pcm)
    assert [m.data for _, m in seen[LABEL_TOPIC]] == ["happiness", "", "sadness", ""]


@pytest.mark.parametrize("audio_msg", ["audio_stamped", "audio_data_stamped"])
def test_sqlite3_compressed_and_audio_common_layouts(video, tmp_path, audio_msg):
    path, pcm, times = video
    out = tmp_path / "bag"
    assert (
        run_make_bag(
            path, "-o", out, "--storage", "sqlite3", "--compressed", "--label", "neutral", "--audio-msg", audio_msg
        )
        == 0
    )
    assert next(out.glob("*.db3")).is_file()
    with BagFile(out) as bag:
        streams = select_streams(bag)
        assert streams.image.name == "/image_raw/compressed" and streams.image.count == len(times)
        assert streams.audio.msgtype == (AUDIO_STAMPED if audio_msg == "audio_stamped" else AUDIO_DATA_STAMPED)
        adapter = AudioAdapter(
            bag,
            streams.audio.msgtype,
            streams.audio_info and streams.audio_info.name,
            Namespace(audio_channels=1, audio_rate=8000, audio_format="U8"),
        )
        chunks = [adapter(raw) for _, _, _, raw in bag.messages([streams.audio.name])]
        first = bag.deserialize(next(bag.messages([streams.image.name]))[3], streams.image.msgtype)
        labels = _labels(bag)
    mono = np.concatenate([np.frombuffer(bytes(c.data), "<f4") for c in chunks])
    assert all(c.sample_rate == 16000 and c.sample_format == "F32LE" for c in chunks)  # from the bag, not the flags
    np.testing.assert_allclose(mono, pcm.astype(np.float32).mean(axis=1) / 32768, atol=1e-4)
    assert IMAGE_MESSAGES[streams.image.msgtype].to_rgb(first).shape == (120, 160, 3)
    end = labels[-1][0]
    assert labels == [(ORIGIN, "neutral"), (end, "")] and end >= ORIGIN + int(times[-1] * NS)


def test_frames_folder_with_wav_and_one_label(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (1, 2, 10):  # natural order: 1, 2, 10
        cv2.imwrite(str(frames / f"f{i}.png"), np.full((24, 32, 3), i * 20, np.uint8))
    import wave

    samples = (np.arange(8000) % 200 - 100).astype("<i2")
    with wave.open(str(tmp_path / "mic.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(samples.tobytes())
    out = tmp_path / "bag"
    assert run_make_bag(frames, "-o", out, "--fps", 4, "--audio", tmp_path / "mic.wav", "--label", "anger") == 0
    with BagFile(out) as bag:
        imgs = [(bag.deserialize(raw, ty), ty) for _, ty, _, raw in bag.messages(["/image_raw"])]
        audio = [bag.deserialize(raw, ty) for _, ty, _, raw in bag.messages(["/audio"])]
        labels = _labels(bag)
    assert [i.header.stamp.sec * NS + i.header.stamp.nanosec - ORIGIN for i, _ in imgs] == [0, NS // 4, NS // 2]
    assert [int(IMAGE_MESSAGES[ty].to_rgb(i)[0, 0, 0]) for i, ty in imgs] == [20, 40, 200]
    np.testing.assert_array_equal(np.concatenate([np.frombuffer(a.data.tobytes(), "<i2") for a in audio]), samples)
    assert labels == [(ORIGIN, "anger"), (ORIGIN + NS, "")]  # the audio (1 s) outlasts the frames


def _clip_list(tmp_path: Path) -> Path:
    for name, value in (("a", 50), ("b", 150)):
        (tmp_path / name).mkdir()
        for i in range(6):
            cv2.imwrite(str(tmp_path / name / f"{i:03d}.jpg"), np.full((24, 32, 3), value, np.uint8))
    listing = tmp_path / "test.txt"
    listing.write_text("a 6 1\nb 6 surprise\n")  # DFEW: 1 = happiness; a name works too
    return listing


def test_clip_list_one_bag_per_clip_and_one_long_bag(tmp_path):
    listing = _clip_list(tmp_path)
    assert run_make_bag(listing, "--clip-list", "-o", tmp_path / "bags", "--fps", 10) == 0
    bags = sorted((tmp_path / "bags").iterdir())
    assert [b.name for b in bags] == ["00000_a", "00001_b"]
    with BagFile(bags[1]) as bag:
        assert _labels(bag) == [(ORIGIN, "surprise"), (ORIGIN + 6 * NS // 10, "")]

    assert run_make_bag(listing, "--clip-list", "--one-bag", "--gap-s", 1.5, "-o", tmp_path / "long", "--fps", 10) == 0
    with BagFile(tmp_path / "long") as bag:
        stamps = [t for _, _, t, _ in bag.messages(["/image_raw"])]
        labels = _labels(bag)
    second = ORIGIN + 6 * NS // 10 + int(1.5 * NS)
    assert stamps[:6] == [ORIGIN + i * NS // 10 for i in range(6)] and stamps[6] == second
    assert labels == [
        (ORIGIN, "happiness"),
        (ORIGIN + 6 * NS // 10, ""),
        (second, "surprise"),
        (second + 6 * NS // 10, ""),
    ]


def test_relabel_and_split_without_replaying(video, tmp_path):
    path, _, times = video
    assert run_make_bag(path, "-o", tmp_path / "bag", "--label", "neutral", "--no-audio") == 0
    csv = tmp_path / "new.csv"
    csv.write_text("0.5,1.0,fear\n1.0,1.6,disgust\n")
    assert run_make_bag(tmp_path / "bag", "--labels", csv, "-o", tmp_path / "relabelled", "--storage", "sqlite3") == 0
    with BagFile(tmp_path / "relabelled") as bag:
        assert _labels(bag) == [(ORIGIN + NS // 2, "fear"), (ORIGIN + NS, "disgust"), (ORIGIN + 1_600_000_000, "")]
        assert bag.topics["/image_raw"].count == len(times)
    assert run_make_bag(tmp_path / "relabelled", "--split-labels", "-o", tmp_path / "split") == 0
    parts = sorted((tmp_path / "split").iterdir())
    assert [p.name for p in parts] == ["00000_fear", "00001_disgust"]
    for part, (a, b, label) in zip(parts, [(0.5, 1.0, "fear"), (1.0, 1.6, "disgust")]):
        with BagFile(part) as bag:
            stamps = [t for _, _, t, _ in bag.messages(["/image_raw"])]
            assert stamps == [ORIGIN + int(round(t * NS)) for t in times if a <= t < b]
            assert _labels(bag) == [(ORIGIN + int(a * NS), label), (ORIGIN + int(b * NS), "")]
            assert bag.custom_data[ORIGIN_KEY] == str(ORIGIN + int(a * NS))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize(
    "image,audio",
    [
        ("bgr8", "audio_stamped"),
        ("rgb8", "audio_data_stamped"),
        ("mono8", None),
        ("yuv422_yuy2", "audio_stamped"),
        ("compressed", "audio_data_stamped"),
    ],
)
def test_bags_recorded_on_a_robot_are_understood(tmp_path, storage, image, audio):
    info = write_robot_bag(tmp_path / "robot", storage, image, audio)
    with BagFile(tmp_path / "robot") as bag:
        assert "/tf" in bag.topics and "/odom" in bag.topics  # present, and ignored
        streams = select_streams(bag)
        assert streams.image.count == info["frames"] and streams.labels is None
        frame = bag.deserialize(next(bag.messages([streams.image.name]))[3], streams.image.msgtype)
        assert IMAGE_MESSAGES[streams.image.msgtype].to_rgb(frame).shape == (120, 160, 3)
        if audio is None:
            assert streams.audio is None
            return
        assert streams.audio.count == info["audio_messages"]
        assert (streams.audio_info is not None) == (audio == "audio_data_stamped")
        adapter = AudioAdapter(
            bag,
            streams.audio.msgtype,
            streams.audio_info and streams.audio_info.name,
            Namespace(audio_channels=2, audio_rate=44100, audio_format="S32LE"),
        )
        chunks = [adapter(raw) for _, _, _, raw in bag.messages([streams.audio.name])]
    assert all(c is not None and c.sample_rate == 16000 and len(c.data) == 1600 * 4 for c in chunks)
    assert chunks[1].header.stamp.sec * NS + chunks[1].header.stamp.nanosec == info["start_ns"] + NS // 10


def test_labels_csv_errors_name_the_file_and_line(tmp_path):
    classes = ["happiness", "sadness", "neutral"]
    bad = tmp_path / "unknown.csv"
    bad.write_text("start,end,label\n0,1,happiness\n1,2,joy\n")
    with pytest.raises(LabelError, match=rf"{bad}:3: unknown class 'joy'; known classes: happiness, sadness, neutral"):
        read_labels_csv(bad, classes)
    overlap = tmp_path / "overlap.csv"
    overlap.write_text("0,1.5,happiness\n1.0,2,sadness\n")
    with pytest.raises(
        LabelError, match=rf"{overlap}:2: span 1-2 s \(sadness\) overlaps 0-1.5 s \(happiness\) from {overlap}:1"
    ):
        read_labels_csv(overlap, classes)
    reversed_ = tmp_path / "reversed.csv"
    reversed_.write_text("2,1,happiness\n")
    with pytest.raises(LabelError, match=rf"{reversed_}:1: span end 1 s is not after its start 2 s"):
        read_labels_csv(reversed_, classes)
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("0,abc,happiness\n")
    with pytest.raises(LabelError, match=rf"{garbage}:1: end 'abc' is not a number"):
        read_labels_csv(garbage, classes)
    spans = read_labels_csv(_write(tmp_path / "ok.csv", "1,2,sadness\n0,1,happiness\n3,4,neutral\n"), classes, 10 * NS)
    assert [(s.start_ns, s.label) for s in spans] == [
        (10 * NS, "happiness"),
        (11 * NS, "sadness"),
        (13 * NS, "neutral"),
    ]
    assert spans_from_messages(spans_to_messages(spans), 20 * NS, "x", classes) == spans


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_make_bag_bad_input_fails_clearly(video, tmp_path, capsys):
    path, _, _ = video
    csv = _write(tmp_path / "bad.csv", "0,1,happiness\n0.5,2,sadness\n")
    assert run_make_bag(path, "-o", tmp_path / "x", "--labels", csv) == 2
    assert f"{csv}:2: span" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert run_make_bag(path, "-o", tmp_path / "y", "--label", "joy") == 2
    assert "--label 'joy' is not a known class" in capsys.readouterr().err
    not_video = _write(tmp_path / "notes.mp4", "not a video")
    assert run_make_bag(not_video, "-o", tmp_path / "z") == 2
    assert f"{not_video}: neither PyAV" in capsys.readouterr().err


def _bag_for_errors(folder: Path, storage: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_robot_bag(folder / storage, storage, "compressed", None, seconds=1.0, extra_topics=False)
    return folder / storage


def _eval_error(bag: Path, capsys, *extra) -> str:
    assert (
        eval_bag.main([str(bag), "--model", "tiny-random-video", "--out", str(bag.parent / "out"), "-q", *extra]) == 2
    )
    return capsys.readouterr().err


def test_eval_bag_refuses_truncated_corrupt_and_imageless_bags(tmp_path, capsys):
    mcap = _bag_for_errors(tmp_path, "mcap")
    data = next(mcap.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert f"{mcap}: cannot open the bag" in _eval_error(mcap, capsys)

    sqlite = _bag_for_errors(tmp_path, "sqlite3")
    db = next(sqlite.glob("*.db3"))
    raw = bytearray(db.read_bytes())
    raw[100:4100] = b"\xff" * 4000
    db.write_bytes(bytes(raw))
    assert f"{sqlite}: cannot open the bag" in _eval_error(sqlite, capsys)

    no_meta = _bag_for_errors(tmp_path / "no_meta", "mcap")
    (no_meta / "metadata.yaml").unlink()
    assert f"{no_meta}: not a rosbag2 directory" in _eval_error(no_meta, capsys)

    imageless = tmp_path / "imageless"
    store = typestore("mgonzs13")
    with BagWriter(imageless, "sqlite3", store) as w:
        w.write("/tf", 1, store.types["tf2_msgs/msg/TFMessage"](transforms=[]))
        w.write("/chatter", 2, store.types["std_msgs/msg/String"](data="hi"))
    err = _eval_error(imageless, capsys)
    assert f"{imageless}: no sensor_msgs/msg/Image or CompressedImage topic" in err
    assert "/chatter (std_msgs/msg/String, 1 messages), /tf (tf2_msgs/msg/TFMessage, 1 messages)" in err

    ok = _bag_for_errors(tmp_path / "fine", "mcap")
    assert "--image-topic /nope is not in the bag; its topics: /camera/color/image_raw/compressed" in _eval_error(
        ok, capsys, "--image-topic", "/nope"
    )
    labels = _write(tmp_path / "labels.csv", "0,1,contempt\n")  # a MAFW class; the model is DFEW's
    assert f"{labels}:1: unknown class 'contempt'" in _eval_error(ok, capsys, "--labels", str(labels))


def test_scoring_counts_windows_without_a_reading_as_misses():
    def state(start_s, end_s, label, modality=1):
        stamp = lambda s: SimpleNamespace(sec=int(s), nanosec=int(round((s % 1) * NS)))  # noqa: E731
        return SimpleNamespace(
            window_start=stamp(start_s), window_end=stamp(end_s), label=label, modality=modality, smoothed_label=""
        )

    spans = [Span(0, 4 * NS, "happiness"), Span(4 * NS, 8 * NS, "sadness")]
    states = [
        state(0, 2, "happiness"),
        state(1, 3, "sadness"),
        state(5, 7, "sadness"),
        state(5.5, 7.5, "no_face", 0),
        state(9, 11, "happiness"),
    ]  # midpoint 10 s: outside every span
    scored = score_states(states, spans, ["happiness", "sadness", "neutral"])
    assert scored.unlabelled == 1 and scored.no_reading == 1
    assert scored.predictions == ["happiness", "sadness", "sadness", NO_READING]
    assert scored.scores.per_class_recall["happiness"] == 0.5 and scored.scores.per_class_recall["sadness"] == 0.5
    assert scored.scores.per_class_recall["neutral"] is None
    assert scored.scores.uar == 0.5 and scored.scores.war == 0.5
