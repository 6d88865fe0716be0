"""occ_ros: camera-only 3D semantic occupancy, from camera topics to voxels (docs/architecture.md).

Layers, each importing only those below it (enforced by ``lint-imports`` in ``make test``)::

    replay                     occ replay: a bag through the node's session, scored
    node                       the rclpy wrapper (thin)
    session                    NodeCore: what the node and replay both drive
    pipeline                   decode -> rig -> preprocess -> backend -> outputs -> messages
    eval | viz                 metrics and evaluation runs | pictures (torch-free, off-robot)
    datasets                   readers: synthetic, nuScenes / Occ3D, SemanticKITTI, rosbag2
    model                      the network (torch): backbone, view transform, deployed graph, checkpoints,
                               and the PyTorch inference backend
    inference                  the backend interface, ONNX Runtime / TensorRT backends, model info
    io                         files and bags: atomic writes, images, rosbag2 / MCAP
    core                       numpy only: grid, rig, vocabulary, preprocess, transforms, tf, raycast, config

Nothing but ``occ_ros.model`` imports torch; backends are ``occ_ros.backends`` entry points.
"""
