"""Inference: one interface over the deployed model formats (torch-free at import).

* :mod:`.model_info` - what a deployed model is (grid, vocabulary, cameras, preprocessing, I/O contract);
* :mod:`.backend` - the :class:`~.backend.InferenceBackend` interface, :func:`~.backend.open_backend`;
* :mod:`.onnxruntime_backend`, :mod:`.tensorrt_backend`, :mod:`.torch_backend` - the three backends;
* :mod:`.engine_meta` - TensorRT engine sidecars and cache keys.
"""
