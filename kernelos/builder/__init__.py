"""The image builder (build host only): ONNX model -> graph IR -> shape inference and constant
folding -> BatchNorm folding -> fusion -> lowering onto generated kernels -> per-target compile ->
device image (kernelos.image). Entry point: build.build_image; the CLI is `kernelos build`."""
