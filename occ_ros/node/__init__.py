"""The ROS 2 node ``occupancy_node``: a thin rclpy driver of :class:`occ_ros.session.OccupancySession`.

* :mod:`.params` - every parameter (names, defaults, validation, param files) and the session they configure,
  ROS-free;
* :mod:`.runtime` - model loading with fallback, subscribed topics, log dispatch, ROS-free;
* :mod:`.occupancy_node` - the rclpy layer (needs ROS 2; importing it elsewhere raises ImportError).

Importing this package does not import rclpy.
"""
