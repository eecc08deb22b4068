"""Data for every profile: procedural scenes with ground truth, real data sets, user photos.

* :func:`get_dataset` ``(profile, split, group="main")``: a torch ``Dataset`` of
  ``(normalised image, label)``. Procedural profiles (``tiny``, ``mini``) give a
  :class:`~zfcore.data.scenes.SceneDataset` whose ``.scenes(indices)`` returns a
  :class:`SceneBatch` with ground truth (boxes, face keypoints) and whose ``.classes`` names the
  classes; real profiles give torchvision data sets with the paper's preprocessing (section 3.1).
* :func:`make_loader`: a ``DataLoader`` with the paper's crops and flips when ``augment=True``.
* :func:`normalize` / :func:`denormalize`, :func:`class_names`.
* :func:`load_image` / :func:`load_folder`: the user's own photos (``zfcore.data.images``).
"""

from .images import (
    ImageLoadError,
    ImageTooLargeError,
    PhotoFolder,
    PhotoStream,
    iter_folder,
    load_folder,
    load_image,
    photos_first,
    sample_photos,
    to_model_input,
)
from .registry import DataNotFoundError, class_names, get_dataset, make_loader
from .scenes import (
    GENERATOR_VERSION,
    GROUPS,
    KEYPOINT_NAMES,
    MAIN_CLASSES,
    TRANSFER_CLASSES,
    SceneBatch,
    SceneDataset,
    render_scenes,
)
from .transforms import denormalize, normalization, normalize, paper_crops

__all__ = [
    "GENERATOR_VERSION",
    "GROUPS",
    "KEYPOINT_NAMES",
    "MAIN_CLASSES",
    "TRANSFER_CLASSES",
    "SceneBatch",
    "SceneDataset",
    "render_scenes",
    "normalize",
    "denormalize",
    "normalization",
    "paper_crops",
    "get_dataset",
    "make_loader",
    "class_names",
    "DataNotFoundError",
    "load_image",
    "load_folder",
    "iter_folder",
    "to_model_input",
    "sample_photos",
    "PhotoFolder",
    "PhotoStream",
    "photos_first",
    "ImageLoadError",
    "ImageTooLargeError",
]
