"""Export: ONNX / TensorRT model export and checks (import name occ_export)."""
