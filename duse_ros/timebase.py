"""Time in duse_ros is integer nanoseconds (header stamps, bag times, window spans): the one
conversion constant, and the one conversion from a stamp and back."""

NS = 1_000_000_000  # nanoseconds per second


def stamp_to_ns(stamp) -> int:
    """Nanoseconds of any message with `sec` and `nanosec` fields: builtin_interfaces Time or
    Duration, from rclpy or read from a bag by rosbags."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


def sec_nanosec(ns: int) -> tuple[int, int]:
    """(sec, nanosec) of a stamp at `ns` nanoseconds: the fields of builtin_interfaces Time."""
    ns = int(ns)
    return ns // NS, ns % NS
