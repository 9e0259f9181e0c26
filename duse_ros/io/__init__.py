"""ROS-free file I/O: rosbag2 files (`rosbag`), video/frame/clip-list sources (`sources`) and
emotion label spans (`labels`). Nothing here imports rclpy."""
