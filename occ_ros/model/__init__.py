"""The model layer (torch): the occupancy network and what runs it.

* :mod:`.backbone`, :mod:`.view_transform`, :mod:`.network` - image backbone, voxel-sampling view transform,
  BEV/3D necks and heads;
* :mod:`.deployed` - the graph that is exported to ONNX and run by every backend;
* :mod:`.checkpoint` - the checkpoint format (read and written here, trained in ``occ_training``);
* :mod:`.torch_backend` - the PyTorch inference backend (entry point ``occ_ros.backends: torch``).

The robot's runtime never imports this package (lint-imports contract ``torch-free-runtime``).
"""
