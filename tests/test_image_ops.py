"""The image loader's PIL + numpy + torch transforms against torchvision's PIL path (the reference lives here only)."""
import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from onellm.data.loaders import image as image_ops
from onellm.data.loaders import paired

BICUBIC = T.InterpolationMode.BICUBIC

# (width, height): square, landscape, portrait, extreme strips, tiny, odd sizes, already at the target size
SIZES = [(32, 32), (48, 40), (40, 48), (224, 224), (640, 480), (480, 640), (333, 517), (517, 333), (1000, 37),
         (37, 1000), (3, 5), (31, 32), (33, 32), (225, 224), (224, 300), (300, 224), (1, 1), (7, 200), (112, 111)]
TARGETS = [32, 112, 224]


def _ref_eval(img, size):
    return TF.to_tensor(TF.center_crop(TF.resize(img, size, interpolation=BICUBIC), [size, size]))


def _ref_train(img, size):
    i, j, h, w = T.RandomResizedCrop.get_params(img, list(image_ops.CROP_SCALE), list(image_ops.CROP_RATIO))
    return TF.to_tensor(TF.resized_crop(img, i, j, h, w, [size, size], interpolation=BICUBIC)), (i, j, h, w)


def _image(width, height, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]  # smooth content too: resampling kernels matter there
    base[..., 1] = ((xx * 255) // max(width - 1, 1)).astype(np.uint8)
    return Image.fromarray(base, "RGB")


@pytest.mark.parametrize("width,height", SIZES)
def test_eval_transform_bit_identical(width, height):
    img = _image(width, height, width * 1000 + height)
    for size in TARGETS:
        ref = _ref_eval(img, size)
        got = image_ops.to_tensor(image_ops.eval_crop(img, size))
        assert got.shape == (3, size, size)
        assert torch.equal(got, ref), (width, height, size)
        assert torch.equal(image_ops.to_clip_tensor(image_ops.eval_crop(img, size)),
                           image_ops.clip_normalize(ref))


@pytest.mark.parametrize("width,height", SIZES)
def test_train_transform_and_rng_draws_identical(width, height):
    img = _image(width, height, width + height)
    for seed in range(6):
        for size in TARGETS:
            torch.manual_seed(seed)
            ref, ref_params = _ref_train(img, size)
            ref_next = torch.rand(2)  # the global RNG is left in the same state
            torch.manual_seed(seed)
            params = image_ops.random_crop_params(img)
            got = image_ops.to_tensor(image_ops.apply_crop(img, params, size))
            assert params == ref_params
            assert torch.equal(got, ref), (width, height, seed, size)
            assert torch.equal(torch.rand(2), ref_next)


def test_get_params_fallback_paths_identical():
    # ratios no crop can satisfy in 10 tries force torchvision's central fallback (both branches)
    for width, height, ratio in [(1000, 10, (0.75, 1.3333)), (10, 1000, (0.75, 1.3333)), (50, 50, (5.0, 6.0)),
                                 (50, 50, (0.1, 0.2))]:
        img = _image(width, height, 0)
        for seed in range(5):
            torch.manual_seed(seed)
            ref = T.RandomResizedCrop.get_params(img, [0.9, 1.0], list(ratio))
            torch.manual_seed(seed)
            assert image_ops.random_crop_params(img, (0.9, 1.0), ratio) == tuple(int(v) for v in ref)


def test_center_crop_pads_like_torchvision():
    for width, height in [(10, 20), (20, 10), (5, 5), (9, 40)]:
        img = _image(width, height, 3)
        for size in (12, 16, 41):
            assert torch.equal(TF.to_tensor(image_ops.center_crop(img, size)),
                               TF.to_tensor(TF.center_crop(img, [size, size])))


def test_to_tensor_modes():
    rng = np.random.default_rng(1)
    for mode, shape in [("RGB", (9, 7, 3)), ("L", (9, 7)), ("RGBA", (9, 7, 4))]:
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
        assert torch.equal(image_ops.to_tensor(img), TF.to_tensor(img))
    with pytest.raises(ValueError, match="8-bit"):
        image_ops.to_tensor(Image.new("F", (3, 3)))


def test_load_image_and_paired_match_torchvision_path(tmp_path):
    img = _image(61, 45, 9)
    img.save(tmp_path / "rgb.png")
    depth = Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 40), dtype=np.uint8), "L")
    depth.save(tmp_path / "depth.png")
    for size in (32, 112):
        assert torch.equal(image_ops.load_image(tmp_path / "rgb.png", train=False, size=size),
                           image_ops.clip_normalize(_ref_eval(img, size)))
        torch.manual_seed(4)
        got = image_ops.load_image(tmp_path / "rgb.png", train=True, size=size)
        torch.manual_seed(4)
        assert torch.equal(got, image_ops.clip_normalize(_ref_train(img, size)[0]))
        # paired maps: one crop shared by the RGB image and its map
        for train in (False, True):
            torch.manual_seed(5)
            got = paired.load_paired(tmp_path / "depth.png", rgb=tmp_path / "rgb.png", train=train, size=size)
            rgb = Image.open(tmp_path / "rgb.png").convert("RGB")
            dmap = Image.open(tmp_path / "depth.png").convert("RGB").resize(rgb.size, Image.Resampling.BICUBIC)
            torch.manual_seed(5)
            if train:
                p = T.RandomResizedCrop.get_params(rgb, list(image_ops.CROP_SCALE), list(image_ops.CROP_RATIO))
                ref = [TF.to_tensor(TF.resized_crop(im, *p, [size, size], interpolation=BICUBIC)) for im in (rgb, dmap)]
            else:
                ref = [_ref_eval(im, size) for im in (rgb, dmap)]
            assert torch.equal(got, image_ops.clip_normalize(torch.stack(ref)))
