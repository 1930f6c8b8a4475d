"""Constants shared across the library."""
from __future__ import annotations

IGNORE_INDEX = -100  # label of positions that are not supervised (torch cross_entropy's ignore_index)

# The model's keyword inputs of modality m: raw inputs, cached CLIP features, which blocks are cached, and finished
# blocks (encoded once by a caller that reuses them, e.g. the web demo across turns)
VALUES_SUFFIX, FEATURES_SUFFIX, CACHED_SUFFIX, BLOCKS_SUFFIX = "_values", "_clip_features", "_cached", "_blocks"
INPUT_SUFFIXES = (VALUES_SUFFIX, FEATURES_SUFFIX, CACHED_SUFFIX, BLOCKS_SUFFIX)


def modality_input_names(modality: str) -> tuple[str, str, str]:
    """The keyword names of a modality's inputs: (``<m>_values``, ``<m>_clip_features``, ``<m>_cached``)."""
    return modality + VALUES_SUFFIX, modality + FEATURES_SUFFIX, modality + CACHED_SUFFIX


def all_input_names(modality: str) -> tuple[str, ...]:
    """Every keyword input name of a modality (``<m>_blocks`` included)."""
    return (*modality_input_names(modality), modality + BLOCKS_SUFFIX)
