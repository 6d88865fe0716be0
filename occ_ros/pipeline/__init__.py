"""The ROS-free occupancy pipeline the node and ``occ replay`` share (camera messages in, output messages out).

Data flow of one synchronized frame (:class:`~occ_ros.core.frames.FrameSet`)::

    decode (sensor_msgs Image / CompressedImage -> RGB)            occ_ros.io.images.image_to_rgb
    -> rig from CameraInfo + tf extrinsics (cached)                rig_cache.py
    -> the one preprocess (occ_ros.core.preprocess)
    -> backend (ONNX Runtime / TensorRT / PyTorch)                 occ_ros.inference
    -> postprocess: occupied voxels, colours, dense grid           outputs.py
    -> output messages (PointCloud2, MarkerArray, dense grid)      messages.py (rclpy or rosbags classes)

plus the policies around it: ApproximateTime synchronization for replay (sync.py, message_filters' algorithm),
the latest-frame worker (worker.py) and per-stage statistics for diagnostics and metrics (stats.py).
"""
