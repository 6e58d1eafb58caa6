"""Datasets of LR/HR pairs and LR-only images, normalisation, crops and dihedral augmentations."""

from lenssr.data.augment import dihedral, inverse_dihedral
from lenssr.data.dataset import (
    LRDataset,
    MixturePairDataset,
    PairDataset,
    open_train_val,
    split_indices,
    train_val_split,
)
from lenssr.data.normalize import Normalization
from lenssr.data.sources import (
    FileImageSource,
    FilePairSource,
    H5ImageSource,
    H5PairSource,
    ImageSource,
    PairSource,
    open_images,
    open_pairs,
)

__all__ = [
    "FileImageSource",
    "FilePairSource",
    "H5ImageSource",
    "H5PairSource",
    "ImageSource",
    "LRDataset",
    "MixturePairDataset",
    "Normalization",
    "PairDataset",
    "PairSource",
    "dihedral",
    "inverse_dihedral",
    "open_images",
    "open_pairs",
    "split_indices",
    "train_val_split",
    "open_train_val",
]
