"""The pure-PyTorch point tokenizer against a literal simulation of pointnet2's CUDA kernel."""
import numpy as np
import pytest
import torch

from onellm.model.point import PointPatchEmbed, furthest_point_sample, kernel_priority_order, knn_group


def cuda_fps_simulation(points: np.ndarray, m: int) -> list[int]:
    """Step-by-step simulation of furthest_point_sampling_kernel (one block, float32, tree reduction)."""
    n = points.shape[0]
    pow2 = int(np.floor(np.log2(n)))
    T = max(min(1 << pow2, 1024), 1)
    pts = points.astype(np.float32)
    temp = np.full(n, 1e10, dtype=np.float32)
    idxs = [0]
    old = 0
    for _ in range(1, m):
        x1, y1, z1 = pts[old]
        dists = np.zeros(T, dtype=np.float32)
        dists_i = np.zeros(T, dtype=np.int64)
        for tid in range(T):  # each thread's strided scan
            best, besti = np.float32(-1), 0
            for k in range(tid, n, T):
                x2, y2, z2 = pts[k]
                d = np.float32(np.float32(np.float32((x2 - x1) * (x2 - x1)) + np.float32((y2 - y1) * (y2 - y1)))
                               + np.float32((z2 - z1) * (z2 - z1)))
                d2 = min(d, temp[k])
                temp[k] = d2
                if d2 > best:
                    besti, best = k, d2
            dists[tid], dists_i[tid] = best, besti
        stride = T // 2
        while stride >= 1:  # shared-memory tree reduction, lower slot kept on ties
            for tid in range(stride):
                v1, v2 = dists[tid], dists[tid + stride]
                i1, i2 = dists_i[tid], dists_i[tid + stride]
                dists[tid] = max(v1, v2)
                dists_i[tid] = i2 if v2 > v1 else i1
            stride //= 2
        old = int(dists_i[0])
        idxs.append(old)
    return idxs


@pytest.mark.parametrize("n,m,levels", [(64, 24, 2), (100, 40, 3), (257, 48, 2), (300, 64, 4)])
def test_fps_matches_cuda_kernel_with_heavy_ties(n, m, levels):
    rng = np.random.default_rng(n)
    # quantised coordinates -> many exactly equal distances (like quantised RGB colours)
    pts = rng.integers(0, levels, size=(2, n, 3)).astype(np.float32) / max(levels - 1, 1)
    ours = furthest_point_sample(torch.from_numpy(pts), m)
    for b in range(2):
        assert ours[b].tolist() == cuda_fps_simulation(pts[b], m)


def test_fps_matches_cuda_kernel_continuous():
    rng = np.random.default_rng(1)
    pts = rng.standard_normal((1, 200, 3)).astype(np.float32)
    assert furthest_point_sample(torch.from_numpy(pts), 50)[0].tolist() == cuda_fps_simulation(pts[0], 50)


def test_fps_degenerate_cloud_repeats_index_zero():
    pts = torch.full((1, 128, 3), 0.5)
    assert furthest_point_sample(pts, 16).tolist() == [[0] * 16]


def test_priority_order_is_bit_reversed_thread_then_rank():
    order = kernel_priority_order(8).tolist()  # 8 threads, one point each: bit-reversed 3-bit ids
    assert order == [0, 4, 2, 6, 1, 5, 3, 7]
    order = kernel_priority_order(10).tolist()  # 8 threads; points 8, 9 are rank 1 of threads 0, 1
    assert order == [0, 8, 4, 2, 6, 1, 9, 5, 3, 7]


def test_fps_picks_spread_out_points():
    pts = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [10, 0, 0], [5, 0, 0], [0.2, 0, 0]]])
    assert furthest_point_sample(pts, 3)[0].tolist() == [0, 2, 3]


def test_knn_group_matches_brute_force():
    torch.manual_seed(0)
    pts = torch.randn(2, 50, 3)
    centres = pts[:, :5]
    idx = knn_group(pts, centres, 4)  # (B, M, k)
    d = ((pts[:, None, :, :] - centres[:, :, None, :]) ** 2).sum(-1)  # (B, M, N)
    expected = d.argsort(-1)[..., :4]
    assert torch.equal(idx, expected)
    assert torch.equal(idx[..., 0], torch.arange(5).expand(2, 5))  # each centre is its own nearest point


def test_point_patch_embed_shapes_and_sampling_channels():
    torch.manual_seed(0)
    x = torch.rand(2, 256, 6)
    embed = PointPatchEmbed(6, 16, num_groups=32, group_size=8, sampling="xyz")
    out = embed(x)
    assert out.shape == (2, 32, 16)  # (B, M, D)
    grouped = embed.group(x)  # (B, C, M, k): raw absolute features of the neighbours
    assert grouped.shape == (2, 6, 32, 8)
    centres = furthest_point_sample(x[..., :3], 32)
    assert torch.equal(grouped[:, :, :, 0].transpose(1, 2), torch.gather(x, 1, centres[..., None].expand(-1, -1, 6)))
    # the conv + max equals a per-neighbour linear map followed by a max
    w, b = embed.conv1.weight[:, :, 0, 0], embed.conv1.bias
    manual = (torch.einsum("bcmk,dc->bdmk", grouped, w) + b[None, :, None, None]).amax(-1)  # (B, D, M)
    torch.testing.assert_close(out, manual.transpose(1, 2))
    # "rgb" samples on channels 3:6 (the released checkpoint): a uniformly coloured cloud degenerates
    x_flat = x.clone()
    x_flat[..., 3:] = 0.25
    rgb = PointPatchEmbed(6, 16, 32, 8, sampling="rgb")
    g = rgb.group(x_flat)
    assert torch.equal(g[:, :, :, 0], g[:, :, :1, 0].expand(-1, -1, 32))  # every centre is point 0
    with pytest.raises(ValueError):
        PointPatchEmbed(6, 16, 32, 8, sampling="uvw")
