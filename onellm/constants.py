"""Constants shared across the library."""

IGNORE_INDEX = -100  # label of positions that are not supervised (torch cross_entropy's ignore_index)
