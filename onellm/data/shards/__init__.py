"""Sharded training data: webdataset tar shards (img2dataset / video2dataset / ``data_prep/make_shards.py``) read
by offset from per-shard indexes, decoded from bytes in memory, in a global order the batch sampler decides.

* :mod:`.index`: shard sets (brace patterns, globs, folders, ``shards.json``), per-shard member indexes;
* :mod:`.members`: which members are a sample's inputs, options and caption (from the modality registry);
* :mod:`.decode`: member bytes -> the file loader's tensor;
* :mod:`.dataset`: :class:`ShardDataset`, the alignment dataset over a shard set;
* :mod:`.writer`: manifests -> shards;
* :mod:`.bench`: shards vs extracted files, manifest index vs records (numbers for ``onellm bench``).

See docs/shards.md.
"""
from __future__ import annotations

from .index import ShardError, ShardIndex, ShardSet, shard_index

__all__ = ["ShardDataset", "ShardError", "ShardIndex", "ShardSet", "shard_index"]


def __getattr__(name):
    if name == "ShardDataset":
        from .dataset import ShardDataset

        return ShardDataset
    raise AttributeError(name)
