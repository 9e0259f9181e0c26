import threading

import numpy as np
import pytest

from duse_ros.affect.stats import LatencyReservoir, RateMeter


def test_percentiles_on_known_data():
    r = LatencyReservoir(capacity=1000)
    for v in range(100, 0, -1):  # 1..100, added out of order
        r.add(v)
    p50, p95, p0, p100 = r.percentiles(50, 95, 0, 100)
    # Linear interpolation between closest ranks: rank q/100 * (n - 1) of the sorted samples.
    assert p50 == pytest.approx(50.5)
    assert p95 == pytest.approx(95.05)
    assert (p0, p100) == (1.0, 100.0)
    assert r.count == 100


def test_single_sample_and_empty():
    r = LatencyReservoir()
    assert r.percentiles(50, 95) == (None, None)
    r.add(0.25)
    assert r.percentiles(50, 95) == (0.25, 0.25)


def test_reservoir_keeps_only_the_most_recent_samples():
    r = LatencyReservoir(capacity=10)
    for v in range(100):
        r.add(v)
    assert r.count == 100
    assert r.percentiles(0, 100) == (90.0, 99.0)  # 0..89 are gone: a past stall no longer shows


def test_reservoir_is_safe_across_threads():
    r = LatencyReservoir(capacity=50)

    def writer():
        for v in range(2000):
            r.add(v)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        r.percentiles(50, 95)
    for t in threads:
        t.join()
    assert r.count == 8000


def test_bad_capacity():
    with pytest.raises(ValueError):
        LatencyReservoir(capacity=0)


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_rate_meter_steady_stream_then_stall():
    clock = FakeClock()
    meter = RateMeter(window_s=2.0, clock=clock)
    assert meter.rate_hz() == 0.0
    for _ in range(90):  # 3 s at 30 Hz
        clock.t += 1 / 30
        meter.tick()
    assert meter.rate_hz() == pytest.approx(30.0, abs=0.6)
    clock.t += 1.0  # one second of silence: half the window is empty
    assert meter.rate_hz() == pytest.approx(15.0, abs=0.6)
    clock.t += 1.5  # the whole window is empty: a stalled stream reads 0
    assert meter.rate_hz() == 0.0


def test_rate_meter_first_window_divides_by_elapsed_time():
    clock = FakeClock()
    meter = RateMeter(window_s=5.0, clock=clock)
    for _ in range(10):  # 1 s at 10 Hz, well inside the first window
        clock.t += 0.1
        meter.tick()
    assert meter.rate_hz() == pytest.approx(10.0)


def test_rate_meter_bad_window():
    with pytest.raises(ValueError):
        RateMeter(window_s=0)


def test_arrival_meter_reads_the_camera_rate_and_the_share_that_arrives_from_stamps():
    from duse_ros.affect.stats import ArrivalMeter

    period = 1_000_000_000 // 30
    complete = ArrivalMeter()
    for i in range(15):
        complete.add(i * period)
    assert complete.assess() is None  # too few frames to judge
    for i in range(15, 90):
        complete.add(i * period)
    hz, fraction = complete.assess()
    assert abs(hz - 30.0) < 0.1 and fraction == 1.0
    lossy = ArrivalMeter()
    for i in range(400):
        if i % 10 in (0, 1):  # pairs of neighbours get through: the stamps still show 30 fps
            lossy.add(i * period)
    hz, fraction = lossy.assess()
    assert abs(hz - 30.0) < 0.1 and 0.15 < fraction < 0.25
    lossy.add(0)  # stamps went back (a looped bag): a new stream
    assert lossy.assess() is None


def test_arrival_meter_sees_loss_that_lets_no_two_neighbours_through():
    """3 of 90 raw frames arriving (the default Fast DDS segment): no two arrivals are neighbours,
    yet every gap is a whole number of 33 ms periods, stamps jittered by up to 2 ms. A camera whose
    stamps vary freely is not taken for a lossy one (its shortest gaps, not a finer period, set its
    rate), and one throttled to every third frame reads as complete."""
    from duse_ros.affect.stats import ArrivalMeter

    rng = np.random.default_rng(0)
    period = 1e9 / 30
    sparse = ArrivalMeter()
    index = 0
    for _ in range(40):
        index += int(rng.integers(2, 60))  # never a neighbour, 3 % of frames on average
        sparse.add(int(index * period + rng.uniform(-2e6, 2e6)))
    hz, fraction = sparse.assess()
    assert abs(hz - 30.0) < 0.5 and fraction < 0.1
    free = ArrivalMeter()
    t = 0.0
    for _ in range(64):
        t += rng.uniform(25e6, 41e6)  # a driver stamping on arrival: 25 to 41 ms apart
        free.add(int(t))
    assert free.assess()[1] > 0.7  # 25 ms of 33 on average: short of complete, far above the 0.5 warning
    throttled = ArrivalMeter()
    for i in range(0, 300, 3):
        throttled.add(int(i * period))
    hz, fraction = throttled.assess()
    assert abs(hz - 10.0) < 0.1 and fraction == 1.0
