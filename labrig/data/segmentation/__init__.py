"""Segmentation data: images with one class label per pixel (255 = ignore).

`SegmentationDataset` is what every loader returns; `load_voc` reads the
PASCAL VOC layout, `load_mask_pairs` image/mask folder pairs (binary,
Carvana-style), and `scene_dataset` composes scenes from a classification set
(Fashion-MNIST garments on textured, noisy backgrounds), cached on disk.
"""

from labrig.data.segmentation.base import IGNORE, SegmentationDataset
from labrig.data.segmentation.cache import scene_classes, scene_dataset
from labrig.data.segmentation.folders import (
    BINARY_CLASSES,
    VOC_CLASSES,
    find_voc_root,
    load_mask_pairs,
    load_voc,
)
from labrig.data.segmentation.generated import SceneConfig, generate_scenes, render_items
from labrig.data.segmentation.masks import fit_pair, read_binary_mask, read_index_mask

__all__ = [
    "BINARY_CLASSES",
    "IGNORE",
    "VOC_CLASSES",
    "SceneConfig",
    "SegmentationDataset",
    "find_voc_root",
    "fit_pair",
    "generate_scenes",
    "load_mask_pairs",
    "load_voc",
    "read_binary_mask",
    "read_index_mask",
    "render_items",
    "scene_classes",
    "scene_dataset",
]
