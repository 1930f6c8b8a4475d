"""Point-cloud tokenizer in pure PyTorch: furthest point sampling, kNN grouping, PointPatchEmbed (spec §1.4).

The released model used pointnet2's CUDA kernels. ``furthest_point_sample`` reproduces that kernel's selection
order exactly, ties included, on any device: the kernel runs ``T = min(2**floor(log2 N), 1024)`` threads; thread
``t`` scans points ``t, t+T, ...`` and keeps the first maximum it meets, then a shared-memory tree reduction keeps
the lower slot on ties. The winner among tied points is therefore the one whose thread id has the smallest
*bit-reversed* value, then the smallest index within that thread. We sort the points once by that priority and
take ``argmax`` (first maximum) in the sorted order at each of the ``M - 1`` steps: O(M * N), vectorised over the
batch. Remaining non-bit-exact sources: nvcc's FMA contraction of the distance, and the tie order of ``topk``
in the kNN (both only matter for exact ties).
"""
from __future__ import annotations

import torch
from torch import nn

MAX_THREADS = 1024  # pointnet2's TOTAL_THREADS


def _kernel_threads(n: int) -> int:
    """Block size the CUDA wrapper launches for ``n`` points (``opt_n_threads``)."""
    return max(min(1 << (max(n, 1).bit_length() - 1), MAX_THREADS), 1)


def _bit_reverse(values: torch.Tensor, bits: int) -> torch.Tensor:
    out = torch.zeros_like(values)
    for b in range(bits):  # loop over bits (<= 10), not over points
        out |= ((values >> b) & 1) << (bits - 1 - b)
    return out


def kernel_priority_order(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Permutation of ``range(n)`` in the order the CUDA kernel prefers points on ties, shape (n,)."""
    threads = _kernel_threads(n)
    k = torch.arange(n, device=device)
    thread = k % threads
    rank = k // threads
    key = _bit_reverse(thread, threads.bit_length() - 1) * ((n + threads - 1) // threads) + rank
    return torch.argsort(key)


def furthest_point_sample(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Indices of ``num_samples`` furthest points, in the CUDA kernel's order (first index is always 0).

    Args:
        points: (B, N, 3) coordinates (computed in float32, as the kernel does).
        num_samples: M.
    Returns:
        (B, M) int64 indices into N.
    """
    B, N, _ = points.shape
    order = kernel_priority_order(N, points.device)  # (N,)
    p = points.float()[:, order]  # (B, N, 3) in priority order
    x, y, z = p.unbind(-1)  # each (B, N)
    temp = torch.full((B, N), 1e10, dtype=torch.float32, device=points.device)
    pos_of_zero = torch.argmin(order).expand(B)  # the kernel always starts at original index 0
    idx = torch.empty(B, num_samples, dtype=torch.long, device=points.device)
    last = pos_of_zero.clone()  # (B,) position in the sorted order
    idx[:, 0] = last
    batch = torch.arange(B, device=points.device)
    for j in range(1, num_samples):  # inherently sequential: each centre depends on the previous one
        x1, y1, z1 = x[batch, last, None], y[batch, last, None], z[batch, last, None]  # (B, 1)
        dx, dy, dz = x - x1, y - y1, z - z1
        d = dx * dx + dy * dy + dz * dz  # same summation order as the kernel
        temp = torch.minimum(temp, d)
        last = torch.argmax(temp, dim=1)  # first maximum in priority order == the kernel's winner
        idx[:, j] = last
    return order[idx]  # (B, M) back to original indices


def knn_group(points: torch.Tensor, centers: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` nearest points to every centre, as the released ``KNNGroup`` computes them.

    Args:
        points: (B, N, 3); centers: (B, M, 3).
    Returns:
        (B, M, k) int64 indices into N, nearest first.
    """
    dist = torch.cdist(points.float(), centers.float())  # (B, N, M)
    idx = dist.topk(k, dim=1, largest=False).indices  # (B, k, M)
    return idx.transpose(1, 2)  # (B, M, k)


class PointPatchEmbed(nn.Module):
    """Point-cloud tokenizer: FPS centres, kNN groups of raw features, shared 1x1 conv, max over each group.

    Parameter names (``conv1.weight``, ``conv1.bias``) match the released checkpoint.

    Args:
        in_channels: feature channels per point (6: xyz + rgb).
        dim: output width D.
        num_groups: M, the number of tokens.
        group_size: k neighbours per group.
        sampling: "xyz" samples and groups on channels 0:3; "rgb" on channels 3:6 as the released model did.
    """

    def __init__(self, in_channels: int, dim: int, num_groups: int, group_size: int, sampling: str = "xyz"):
        super().__init__()
        if sampling not in ("xyz", "rgb"):
            raise ValueError(f"point sampling must be 'xyz' or 'rgb', got {sampling!r}")
        self.num_groups = num_groups
        self.group_size = group_size
        self.sampling = sampling
        self.conv1 = nn.Conv2d(in_channels, dim, kernel_size=1, stride=1)

    def group(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features of each group's neighbours: (B, N, C) -> (B, C, M, k)."""
        B, N, C = x.shape
        coords = x[..., 3:6] if self.sampling == "rgb" else x[..., 0:3]  # (B, N, 3)
        with torch.no_grad():  # index selection is not differentiable anyway
            centre_idx = furthest_point_sample(coords, self.num_groups)  # (B, M)
            centres = torch.gather(coords, 1, centre_idx[..., None].expand(-1, -1, 3))  # (B, M, 3)
            nn_idx = knn_group(coords, centres, self.group_size)  # (B, M, k)
        M, k = nn_idx.shape[1:]
        flat = nn_idx.reshape(B, M * k, 1).expand(-1, -1, C)  # (B, M*k, C)
        grouped = torch.gather(x, 1, flat).reshape(B, M, k, C)  # (B, M, k, C)
        return grouped.permute(0, 3, 1, 2)  # (B, C, M, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) points -> (B, M, D) tokens in FPS order (sampling and grouping in float32)."""
        feats = self.group(x.float()).to(self.conv1.weight.dtype)  # (B, C, M, k)
        out = self.conv1(feats)  # (B, D, M, k)
        return out.amax(dim=-1).transpose(1, 2)  # (B, M, D)
