"""The one play loop and the one send-and-count of duse-eval-bag (tools/bag_player.py), which both
affect_node's replay and the provider mode use: here with a stand-in player and bag (no DDS), so the
order of the steps and every count are pinned; the replays themselves are test_eval_bag.py's and
test_eval_providers.py's."""

from __future__ import annotations

import time
from types import SimpleNamespace

from duse_ros.io.rosbag import AUDIO_CHUNK
from duse_ros.timebase import NS, sec_nanosec
from duse_ros.tools.bag_player import Sent, play_messages, send

IMAGE = "sensor_msgs/msg/CompressedImage"


class _Bag:
    """A bag of (topic, msgtype, log ns, raw) whose raw is the header stamp in ns, as text."""

    def __init__(self, messages):
        self._messages = messages
        self.topics = {t: SimpleNamespace(count=sum(m[0] == t for m in messages)) for t in {m[0] for m in messages}}

    def messages(self, topics):
        return iter([m for m in self._messages if m[0] in topics])

    def deserialize(self, raw, msgtype):
        sec, nanosec = sec_nanosec(int(raw))
        return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)))


class _Player:
    """What the loop and send touch of a Player, each call written to one log."""

    def __init__(self):
        self.log: list[tuple] = []
        self.node = object()
        self.rclpy = SimpleNamespace(spin_once=lambda node, timeout_sec: self.log.append(("spin", timeout_sec)))
        self.image_pub = SimpleNamespace(publish=lambda raw: self.log.append(("image", raw)))
        self.audio_pub = SimpleNamespace(publish=lambda chunk: self.log.append(("audio", chunk)))

    def run_clock(self):
        self.log.append(("run_clock",))

    def tick_clock(self, ns):
        self.log.append(("tick", ns))


def test_each_message_ticks_the_clock_then_is_handled_then_the_node_spins_once():
    bag = _Bag([("/cam", IMAGE, 10, b"1"), ("/mic", AUDIO_CHUNK, 20, b"2"), ("/other", IMAGE, 30, b"3")])
    player, sent = _Player(), Sent()
    play_messages(
        player,
        bag,
        ["/cam", "/mic"],
        sent,
        lambda m: player.log.append(("handle", m[0])),
        rate=1,
        realtime=False,
        quiet=True,
    )
    assert player.log == [
        ("tick", 10),
        ("handle", "/cam"),
        ("spin", 0.0),
        ("tick", 20),
        ("handle", "/mic"),
        ("spin", 0.0),
    ]
    assert sent.started is not None


def test_realtime_holds_each_message_to_its_recorded_time_running_the_clock_and_idle_meanwhile():
    rate, gap_ns = 4.0, NS // 5  # 0.2 s apart in the bag: 0.05 s apart at rate 4
    bag = _Bag([("/cam", IMAGE, 7 * NS + k * gap_ns, b"0") for k in range(4)])
    player, sent, handled, idles = _Player(), Sent(), [], []
    play_messages(
        player,
        bag,
        ["/cam"],
        sent,
        lambda m: handled.append((time.monotonic(), m[2])),
        rate=rate,
        realtime=True,
        quiet=True,
        idle=lambda: idles.append(1),
    )
    for when, log_ns in handled:  # never early; how late depends on the machine, so it is not asserted
        assert when >= sent.started + (log_ns - 7 * NS) / NS / rate
    assert idles and ("run_clock",) in player.log
    # while waiting it spins with a bounded timeout, never the 0 s spin that follows a message
    assert any(entry[0] == "spin" and 0 < entry[1] <= 0.02 for entry in player.log)


def test_send_publishes_and_counts_frames_audio_and_unconvertible_audio():
    bag, player, sent = _Bag([]), _Player(), Sent()
    send(player, sent, bag, ("/cam", IMAGE, 0, str(3 * NS).encode()), None)
    first = sent.send_time[3 * NS]
    send(player, sent, bag, ("/cam", IMAGE, 1, b"ignored"), None, stamp=3 * NS)  # same stamp again
    assert sent.frames == 2 and sent.send_time == {3 * NS: first}  # the first send time is kept

    def audio(raw):
        return None if raw == b"bad" else ("chunk", raw)

    send(player, sent, bag, ("/mic", AUDIO_CHUNK, 2, str(5 * NS).encode()), audio)
    send(player, sent, bag, ("/mic", AUDIO_CHUNK, 3, str(4 * NS).encode()), audio)  # an older stamp
    send(player, sent, bag, ("/mic", AUDIO_CHUNK, 4, b"bad"), audio)
    assert (sent.audio_messages, sent.malformed_audio, sent.last_audio_ns) == (2, 1, 5 * NS)
    published = [entry for entry in player.log if entry[0] in ("image", "audio")]
    assert published == [
        ("image", str(3 * NS).encode()),
        ("image", b"ignored"),
        ("audio", ("chunk", str(5 * NS).encode())),
        ("audio", ("chunk", str(4 * NS).encode())),
    ]
