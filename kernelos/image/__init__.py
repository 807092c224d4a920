"""Device image format v1 (docs/image-format.md): one self-contained, verifiable file.

    write_image(path, dag, weights, golden_inputs, golden_outputs, model_info=None) -> ImageSummary
    read_image(path, target=None) -> Image      (ImageError on any damage, before any device work)

The writer (build host) is imported on first use, so booting an image does not load it.
"""

from .layout import MAGIC, SECTION_ALIGN_B, VERSION
from .reader import Image, read_image

__all__ = ["Image", "ImageSummary", "MAGIC", "SECTION_ALIGN_B", "VERSION", "read_image", "write_image"]


def __getattr__(name):
    if name in ("ImageSummary", "write_image"):
        from . import writer
        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
