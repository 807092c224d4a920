"""Device image format v1 (docs/image-format.md): one self-contained, verifiable file.

    write_image(path, dag, weights, golden_inputs, golden_outputs, model_info=None) -> ImageSummary
    read_image(path, target=None) -> Image      (ImageError on any damage, before any device work)
"""

from .layout import MAGIC, SECTION_ALIGN_B, VERSION
from .reader import Image, read_image
from .writer import ImageSummary, write_image

__all__ = ["Image", "ImageSummary", "MAGIC", "SECTION_ALIGN_B", "VERSION", "read_image", "write_image"]
