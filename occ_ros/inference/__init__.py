"""Inference: one interface over the deployed model formats (torch-free at import).

* :mod:`.model_info` - what a deployed model is (grid, vocabulary, cameras, preprocessing, I/O contract);
* :mod:`.backend` - the :class:`~.backend.InferenceBackend` interface, :func:`~.backend.open_backend`;
* :mod:`.onnxruntime_backend`, :mod:`.tensorrt_backend` - two of the three backends (the PyTorch one is
  :mod:`occ_ros.model.torch_backend`; all three are found through the ``occ_ros.backends`` entry points);
* :mod:`.engine_meta` - TensorRT engine sidecars and cache keys.
"""
