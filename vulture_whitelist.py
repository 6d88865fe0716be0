"""Names vulture (``make lint``, 60 % confidence) reports that are used where it cannot see: by a framework, a
file format, a plugin group or a test harness. Every entry says which. Anything vulture lists beyond these is
dead code: delete it (issue 20 §7).

    .venv/bin/vulture occ_ros training export tools scripts bench launch vulture_whitelist.py --min-confidence 60
"""
# ruff: noqa: B018, F821

# -- called by frameworks -------------------------------------------------------------------------------------------
_.get_batch_size  # TensorRT IInt8EntropyCalibrator2 protocol (export/occ_export/int8_calibration.py)
_.get_batch
_.read_calibration_cache
_.write_calibration_cache
_.int8_calibrator  # tensorrt.IBuilderConfig attribute (export/occ_export/tensorrt_build.py)
generate_launch_description  # ros2 launch entry point (launch/occupancy.launch.py)
_._check_input_dim  # torch BatchNorm hook overridden by the SyncBatchNorm stand-in (trainer/distributed.py)
__getattr__  # PEP 562 lazy module attributes (occ_ros/session/__init__.py)
OnnxRuntimeBackend  # occ_ros.backends entry points (setup.py), loaded by occ_ros.inference.backend.backend_class
TensorRTBackend
TorchBackend
_.tf_listener  # tf2_ros.TransformListener must stay referenced to keep filling the buffer (node)
_.on_configure  # rclpy.lifecycle transition callbacks, registered by LifecycleNodeMixin (OccupancyLifecycleNode)
_.on_cleanup
_.on_shutdown
lifecycle_main  # console script occupancy_lifecycle_node (setup.py entry point)

# -- attributes of library objects, set to configure them ----------------------------------------------------------
_.producer_name  # onnx.ModelProto fields (onnx_export.py, teachers/espnetv2.py)
_.producer_version
_.doc_string
_.intra_op_num_threads  # onnxruntime.SessionOptions
_.enable_profiling  # onnxruntime.SessionOptions: the profiler (bench/view_transform_bench.py)
_.profile_file_prefix  # onnxruntime.SessionOptions: where the profiler writes
_.log_severity_level
_.graph_optimization_level
_.writeable  # numpy ndarray.flags.writeable (read-only views)

# -- fields of records that are written out (JSON reports, configs, result tables) -----------------------------------
per_frame_agreement  # ParityReport (export report JSON)
calib_from_cache  # BuildResult (summary and report)
color_map_bgr  # SemanticKittiConfig: every key of the official semantic-kitti.yaml
learning_ignore
unused  # BagReport.unused: images no sample used, per camera (occ replay / reader report)
image_stamps_ns  # Sample field (readers fill it; the synchronizer's stamps)
moving_from_frame_only  # LidarGtParams (OUT/sequences/NN/lidar_gt.json)
python  # MachineInfo (occ bench JSON)
timestamp  # BenchResult (occ bench JSON)
macs  # FlopEstimate (docs/model.md table)
sync_evicted  # ReplaySummary (replay metrics.json)
peak_memory_mb  # TrainResult (occ train summary)
voxel_ce  # RenderingLossConfig weights, set from YAML (config/train/*.yaml)
voxel_lovasz
lift_depth
ray_kl
affinity
INT16  # sensor_msgs/PointField datatype constants, the complete set (pipeline/outputs.py)
UINT16
UINT32
FLOAT64
FACE_NAMES  # names of the face codes viz.raster returns (its docstring refers to it)

# -- public API that the tests exercise as its users would --------------------------------------------------------
_.state_names  # Metric base (occ_ros/eval/metric.py): declared states, as torchmetrics exposes them
_.gt_count  # RayIoUMetric: row / column sums of its confusion state
_.pred_count
_.rebuilds  # RigCache: how often the calibration changed (checked by the replay test)
_.builds  # UndistortCache: maps built, once per calibration (checked by tests/test_undistort.py, test_node.py)
_.emitted  # ApproximateTimeSync / LatestFrameWorker introspection: the concurrency tests wait on and read these
_.queued
_.accept
_.running
_.busy
_.wait_idle
calibration_loss  # depth calibration: the objective at given depth maps (the calibration tests' oracle)
_.true_scale_shift  # simulated relative-depth teacher: its true affine (the calibration tests' oracle)
custom_world  # synthetic world API for hand-built scenes (tests build theirs with it)
class_text_embeddings  # CLIP text embeddings of a vocabulary's prompts (docs/teachers.md)
build_espnetv2_onnx  # model-card build recipe, imported by name (onnx_teacher.BUILD_RECIPES; config/teachers/*.yaml)
CAMERA_KEYS  # the per-camera parameter names (occ_ros/node/params.py), used by the node tests
