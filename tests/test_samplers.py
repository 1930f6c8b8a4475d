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
