"""duse_ros: affect sensing for ROS 2 robots (DuSE video and BHGap audio-visual emotion models)."""

from pkgutil import extend_path

# The generated messages (duse_ros.msg) may live in another directory named duse_ros on the
# path: the install prefix when developing from a source tree. Merge them into this package.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
