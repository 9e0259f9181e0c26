"""The affect path without ROS: stream buffers and windowing, face detection and tracking,
preprocessing, the inference engine, the pipeline that ties them, smoothing and stats, and the
affect node's parameter table. duse_ros/nodes/affect_node.py is the thin rclpy adapter on top."""
