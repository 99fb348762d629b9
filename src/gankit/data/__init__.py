"""Image data for GAN training: folders, ``toy-faces`` and torchvision datasets.

Everything becomes one uint8 tensor (N, C, H, W), decoded once and cached on disk, and is
served as float batches in [-1, 1] that equal torchvision's ``Resize``, ``ToTensor``,
``Normalize(0.5, 0.5)`` pipeline bitwise.

Example:
    >>> from gankit.data import BatchLoader, load_images
    >>> dataset = load_images("toy-faces", num_images=64, image_size=32)
    >>> loader = BatchLoader(dataset, batch_size=16, seed=0)
    >>> next(iter(loader)).shape
    torch.Size([16, 3, 32, 32])
"""

from gankit.data.cache import CACHE_ENV, default_cache_dir
from gankit.data.convert import denormalize, normalize_uint8, rgb_to_gray_uint8
from gankit.data.dataset import ImageTensorDataset
from gankit.data.folder import IMAGE_EXTENSIONS, ImageSpec, decode_image, list_image_files
from gankit.data.loader import BatchLoader
from gankit.data.sources import load_images
from gankit.data.standard import STANDARD_DATASETS, is_standard_name
from gankit.data.toyfaces import TOY_FACES_NAME, generate_toy_faces

__all__ = [
    "CACHE_ENV",
    "IMAGE_EXTENSIONS",
    "STANDARD_DATASETS",
    "TOY_FACES_NAME",
    "BatchLoader",
    "ImageSpec",
    "ImageTensorDataset",
    "decode_image",
    "default_cache_dir",
    "denormalize",
    "generate_toy_faces",
    "is_standard_name",
    "list_image_files",
    "load_images",
    "normalize_uint8",
    "rgb_to_gray_uint8",
]
