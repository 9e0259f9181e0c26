"""Time in duse_ros is integer nanoseconds (header stamps, bag times, window spans); this is the
one conversion constant."""

NS = 1_000_000_000  # nanoseconds per second
