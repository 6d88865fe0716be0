"""The ROS 2 node ``occupancy_node``.

* :mod:`.params` - every parameter (names, defaults, validation, param files), ROS-free;
* :mod:`.frame_builder` - synchronized images + CameraInfo + tf -> FrameSet, ROS-free;
* :mod:`.runtime` - the node's behaviour (model loading, frame flow, publishing, diagnostics), ROS-free;
* :mod:`.occupancy_node` - the thin rclpy layer (needs ROS 2; importing it elsewhere raises ImportError).

Importing this package does not import rclpy.
"""
