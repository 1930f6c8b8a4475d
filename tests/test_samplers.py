"""Samplers: single-modality micro-batches on every rank, repeat factors, length grouping, exact resume."""
import numpy as np

from onellm.data.samplers import LengthGroupedBatchSampler, ModalityBatchSampler, group_indices

KEYS = ["image"] * 37 + ["audio"] * 11 + ["video+audio"] * 5 + ["point"] * 20


def rank_batches(sampler_cls, world, **kw):
    return [list(sampler_cls(world_size=world, rank=r, **kw)) for r in range(world)]


def test_every_micro_batch_on_every_rank_holds_one_modality():
    groups = list(group_indices(KEYS).values())
    per_rank = rank_batches(ModalityBatchSampler, 3, groups=groups, micro_batch=4, seed=1)
    assert len({len(b) for b in per_rank}) == 1  # all ranks take the same number of steps
    for step in zip(*per_rank):
        keys = {KEYS[i] for batch in step for i in batch}
        assert len(keys) == 1  # the same modality on all ranks in this step
        assert all(len(b) == 4 for b in step)
    seen = {i for r in per_rank for b in r for i in b}
    assert seen == set(range(len(KEYS)))  # nothing dropped (incomplete batches wrap around)


def test_repeat_factors_and_round_robin():
    groups = list(group_indices(KEYS).values())
    s = ModalityBatchSampler(groups, micro_batch=5, seed=0, repeats=[1, 3, 2, 0.5])
    counts = {}
    for b in s:
        for i in b:
            counts[KEYS[i]] = counts.get(KEYS[i], 0) + 1
    assert counts["audio"] == 35  # 3 x 11 = 33 wrapped up to a multiple of 5
    assert counts["point"] == 10  # half of 20
    rr = list(ModalityBatchSampler(groups, micro_batch=5, seed=0, interleave="round_robin"))
    assert len(rr) == 4 * 1  # the smallest group (5 items -> 1 batch) sets the length, as the original
    assert [KEYS[b[0]] for b in rr] == ["image", "audio", "video+audio", "point"]


def test_order_is_seeded_and_changes_per_epoch():
    groups = list(group_indices(KEYS).values())
    a = list(ModalityBatchSampler(groups, micro_batch=4, seed=3))
    b = list(ModalityBatchSampler(groups, micro_batch=4, seed=3))
    c = ModalityBatchSampler(groups, micro_batch=4, seed=3)
    c.set_epoch(1)
    assert a == b and list(c) != a


def test_resume_continues_the_exact_order():
    groups = list(group_indices(KEYS).values())
    full = list(ModalityBatchSampler(groups, micro_batch=4, world_size=2, rank=1, seed=5))
    s = ModalityBatchSampler(groups, micro_batch=4, world_size=2, rank=1, seed=5)
    s.set_state(epoch=0, position=7)
    assert list(s) == full[7:] and len(s) == len(full) - 7
    lg_full = list(LengthGroupedBatchSampler(KEYS, list(range(len(KEYS))), micro_batch=2, seed=2, accumulation=2))
    lg = LengthGroupedBatchSampler(KEYS, list(range(len(KEYS))), micro_batch=2, seed=2, accumulation=2)
    lg.set_state(0, 5)
    assert list(lg) == lg_full[5:]


def test_length_grouped_steps_use_one_type_and_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, len(KEYS)).tolist()
    world, mb, accum = 2, 2, 2
    per_rank = rank_batches(LengthGroupedBatchSampler, world, types=KEYS, lengths=lengths, micro_batch=mb,
                            seed=0, accumulation=accum)
    steps = list(zip(*per_rank))
    assert len(steps) % accum == 0
    for k in range(0, len(steps), accum):  # one optimizer step = accum micro-steps x world ranks
        idx = [i for micro in steps[k:k + accum] for b in micro for i in b]
        assert len({KEYS[i] for i in idx}) == 1
    # sorted within type: every step but the wrapped last one spans a narrow length range
    lengths = rng.integers(10, 2000, 203).tolist()
    sampler = LengthGroupedBatchSampler(["t"] * 203, lengths, micro_batch=mb, world_size=world, accumulation=accum)
    spans = sorted(max(lengths[i] for i in gb) - min(lengths[i] for i in gb) for gb in sampler.global_batches(0))
    assert spans[-2] < 1990 / 10  # 4 of 203 sorted lengths per micro-step


def test_length_grouped_repeat_factors():
    keys = ["a"] * 10 + ["b"] * 10
    s = LengthGroupedBatchSampler(keys, list(range(20)), micro_batch=2, seed=0, repeats=[1.0] * 10 + [2.0] * 10)
    seen = [i for b in s for i in b]
    assert sum(i >= 10 for i in seen) == 20 and sum(i < 10 for i in seen) == 10


# -- sharded groups: a lazy, seeded order over shards ------------------------------------------------------------
from onellm.data.samplers import ShardedGroup  # noqa: E402

SIZES = [7, 5, 9, 3]  # samples per shard: 24


def test_a_whole_group_shuffle_of_shards_equals_the_manifest_groups_order():
    """shuffle_buffer "all": the shard group draws the very permutation an index group draws, so a run from shards
    sees the samples of the same run from its manifest, in the same order."""
    groups = list(group_indices(KEYS).values())
    plain = ModalityBatchSampler(groups, micro_batch=4, world_size=2, seed=3, repeats=[1, 2, 0.5, 1])
    mixed_groups = groups[:2] + [ShardedGroup([2, 3], offset=groups[2][0], window=None)] + groups[3:]
    mixed = ModalityBatchSampler(mixed_groups, micro_batch=4, world_size=2, seed=3, repeats=[1, 2, 0.5, 1])
    assert [b.tolist() for b in plain.global_batches(0)] == [b.tolist() for b in mixed.global_batches(0)]


def test_sharded_group_reads_each_sample_once_per_pass_on_every_rank_in_one_modality():
    keys = ["image"] * 24 + ["audio"] * 16
    audio = list(range(24, 40))
    for window in (1, 4, 10, 1000):
        group = ShardedGroup(SIZES, offset=0, window=window)
        per_rank = rank_batches(ModalityBatchSampler, 2, groups=[group, audio], micro_batch=4, seed=1)
        assert len(per_rank[0]) == len(per_rank[1]) == 3 + 2
        for step in zip(*per_rank):
            assert len({keys[i] for b in step for i in b}) == 1  # one modality on every rank in a step
        seen = sorted(i for rank in per_rank for b in rank for i in b)
        assert seen == list(range(40))  # 24 + 16 samples, 8 per global batch: each exactly once


def test_sharded_order_is_a_seeded_function_of_the_position():
    group = lambda: ShardedGroup(SIZES, offset=100, window=5)  # noqa: E731
    a = ModalityBatchSampler([group()], micro_batch=3, seed=7)
    b = ModalityBatchSampler([group()], micro_batch=3, seed=7)
    assert list(a) == list(b)
    first = [i for batch in a for i in batch]
    assert sorted(first) == list(range(100, 124)) and first != list(range(100, 124))
    a.set_epoch(1)
    assert [i for batch in a for i in batch] != first  # a new shard order and new windows every epoch
    # resume: the position alone places the stream (nothing before it is read or computed again)
    c = ModalityBatchSampler([group()], micro_batch=3, seed=7)
    c.set_state(0, 5)
    assert list(c) == list(b)[5:] and len(c) == 3
    # locality: a window spans few shards (the window of 5 samples touches at most 2 of them here)
    g = group()
    order = ShardedGroup.order(g, 7, 0, 1.0).take(np.arange(24))
    shard_of = np.searchsorted(np.cumsum(SIZES), order - 100, side="right")
    assert all(len(set(shard_of[w:w + 5])) <= 2 for w in range(0, 24, 5))


def test_sharded_repeat_factors_and_round_robin():
    group = ShardedGroup([10, 10], window=6)
    s = ModalityBatchSampler([group], micro_batch=5, seed=0, repeats=[1.5])
    seen = [i for b in s for i in b]
    assert len(seen) == 30 and np.bincount(seen, minlength=20).tolist().count(2) == 10  # half the samples twice
    rr = ModalityBatchSampler([ShardedGroup([10], window=3), list(range(10, 15))], micro_batch=5,
                              interleave="round_robin")
    assert [len(b) for b in rr] == [5, 5] and rr.num_batches(0) == 2
