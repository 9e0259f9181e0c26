"""duse_ros: affect sensing for ROS 2 robots (DuSE video and BHGap audio-visual emotion models)."""

__version__ = "0.1.0"
