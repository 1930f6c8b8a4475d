"""Per-modality loaders: shapes, the original preprocessing (spec §3) reproduced numerically, bad inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import loader_fixtures as fx
import numpy as np
import pytest
import soundfile
import torch
import torchaudio
import torchvision.transforms as T
from PIL import Image

from onellm.config import OneLLMConfig
from onellm.data.errors import InputError
from onellm.data.loaders import load_modality
from onellm.data.loaders.image import CLIP_MEAN, CLIP_STD
from onellm.data.loaders.video import clip_frame_indices

TINY = OneLLMConfig.preset("tiny")  # image 32, audio 32 x 128, 1024 points
DEFAULT = OneLLMConfig.preset("onellm-7b")
MEAN = torch.tensor(CLIP_MEAN)[:, None, None]
STD = torch.tensor(CLIP_STD)[:, None, None]


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised (..., 3, H, W) -> pixel values in 0..255."""
    return (x * STD + MEAN) * 255


def clip_pipeline(*steps) -> T.Compose:
    return T.Compose([*steps, T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Shared fixture files (the videos are the slowest to write)."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(d / "rgb.png")
    fx.write_video(d / "landscape.mp4")
    fx.write_video(d / "portrait.mp4", width=48, height=64)
    return d


# ------------------------------------------------------------------------------------------------ image
def test_image_eval_matches_torchvision_pipeline(files):
    out = load_modality("image", files / "rgb.png", config=TINY)
    ref = clip_pipeline(T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32))(
        Image.open(files / "rgb.png").convert("RGB"))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    assert load_modality("image", files / "rgb.png").shape == (3, 224, 224)  # default geometry


def test_image_train_is_the_original_random_crop(files):
    ref_tf = clip_pipeline(T.RandomResizedCrop(32, scale=(0.9, 1.0), ratio=(0.75, 1.3333),
                                               interpolation=T.InterpolationMode.BICUBIC))
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        outs.append(load_modality("image", files / "rgb.png", train=True, config=TINY))
        torch.manual_seed(seed)
        torch.testing.assert_close(outs[-1], ref_tf(Image.open(files / "rgb.png").convert("RGB")))
    assert not torch.equal(outs[0], outs[1])


# ------------------------------------------------------------------------------------------------ video
def test_clip_frame_indices_follow_pytorchvideo():
    assert clip_frame_indices(30, 10.0, 5) == [0, 4, 8, 12, 16]  # D = 3 s: starts 0, .4, .8, 1.2, 1.6 s
    assert clip_frame_indices(300, 30.0, 5) == [0, 54, 108, 162, 216]
    assert clip_frame_indices(300, 29.97, 5) == [0, 55, 109, 163, 217]  # first frame at/after each start
    assert clip_frame_indices(5, 10.0, 5) == [0] * 5  # shorter than one clip: every clip starts at 0


def _frame_ids(video: torch.Tensor, crops: int = 3) -> list[int]:
    """Recover the source frame index of every clip from the centre crop's grey level."""
    centre = unnormalize(video[1::crops])  # (clips, 3, S, S)
    grey = centre[:, :, centre.shape[-2] // 2, centre.shape[-1] // 2].mean(dim=1)
    return ((grey - fx.VIDEO_BASE) / fx.VIDEO_STEP).round().long().tolist()


def test_video_picks_clip_start_frames_and_three_crops(files):
    video = load_modality("video", files / "landscape.mp4", config=TINY)
    assert video.shape == (15, 3, 32, 32) and video.dtype == torch.float32
    assert _frame_ids(video) == [0, 4, 8, 12, 16]
    assert torch.equal(load_modality("video", files / "landscape.mp4", train=True, config=TINY), video)
    # 64 x 48 -> short side 32 -> 42 x 32; crops start at x = 0 (left), ceil(10 / 2) = 5, 10 (right)
    left, centre, right = video[0::3], video[1::3], video[2::3]
    torch.testing.assert_close(left[..., 5:], centre[..., :27])
    torch.testing.assert_close(left[..., 10:], right[..., :22])
    assert unnormalize(left)[..., 0].max() < 10  # the black band is in the left crop only
    assert unnormalize(right)[..., -1].min() > 245  # the white band is in the right crop only
    inner = unnormalize(centre)[..., 2:-2]  # the centre crop misses both bands: flat grey per frame
    assert (inner - inner[..., 14:15]).abs().max() < 3


def test_video_portrait_crops_are_top_centre_bottom(files):
    video = load_modality("video", files / "portrait.mp4", config=TINY)
    top, centre, bottom = video[0::3], video[1::3], video[2::3]
    torch.testing.assert_close(top[..., 5:, :], centre[..., :27, :])  # rows instead of columns
    torch.testing.assert_close(top[..., 10:, :], bottom[..., :22, :])
    assert unnormalize(top)[..., 0, :].max() < 10 and unnormalize(bottom)[..., -1, :].min() > 245


def test_video_pyav_fallback_gives_the_same_frames(files, monkeypatch):
    decord_out = load_modality("video", files / "landscape.mp4", config=TINY, backend="decord")
    av_out = load_modality("video", files / "landscape.mp4", config=TINY, backend="av")
    torch.testing.assert_close(av_out, decord_out, atol=0.05, rtol=0)  # 0.05 ~ 3 grey levels
    monkeypatch.setitem(sys.modules, "decord", None)  # "decord not installed": auto must use PyAV
    auto = load_modality("video", files / "landscape.mp4", config=TINY)
    assert _frame_ids(auto) == [0, 4, 8, 12, 16]
    torch.testing.assert_close(auto, av_out)


def test_video_default_geometry(files):
    video = load_modality("video", files / "landscape.mp4")
    assert video.shape == (15, 3, 224, 224) and video.dtype == torch.float32
    assert _frame_ids(video) == [0, 4, 8, 12, 16]


# ------------------------------------------------------------------------------------------------ audio
def _reference_fbank(wave_ct: np.ndarray, rate: int, mel: int, frames: int) -> torch.Tensor:
    """make_audio_features of the original, written out independently (spec §3.3)."""
    w = torch.from_numpy(wave_ct)
    if rate != 16000:
        w = torchaudio.functional.resample(w, rate, 16000)
    w = w - w.mean()
    fb = torchaudio.compliance.kaldi.fbank(w[:1], htk_compat=True, sample_frequency=16000, use_energy=False,
                                          window_type="hanning", num_mel_bins=mel, dither=0.0, frame_shift=10)
    fb = torch.cat([fb, torch.zeros(max(frames - fb.shape[0], 0), mel)])[:frames]
    return ((fb - (-4.2677393)) / (4.5689974 * 2)).T[None]


@pytest.mark.parametrize("rate", [16000, 22050])
def test_audio_equals_kaldi_fbank(tmp_path, rate):
    left, right = fx.sine(1.5, rate, 440), fx.sine(1.5, rate, 1000, amp=0.2) + 0.1
    soundfile.write(tmp_path / "a.wav", np.stack([left, right], axis=1), rate, subtype="FLOAT")
    stereo = np.stack([left, right])  # (C, T): fbank reads channel 0 after the global mean
    out = load_modality("audio", tmp_path / "a.wav", config=TINY)
    assert out.shape == (1, 32, 128) and out.dtype == torch.float32
    torch.testing.assert_close(out, _reference_fbank(stereo, rate, 32, 128), atol=1e-4, rtol=1e-4)
    full = load_modality("audio", tmp_path / "a.wav")  # default geometry: 150 frames, padded to 1024
    assert full.shape == (1, 128, 1024)
    torch.testing.assert_close(full, _reference_fbank(stereo, rate, 128, 1024), atol=1e-4, rtol=1e-4)


def test_audio_truncates_long_input(tmp_path):
    soundfile.write(tmp_path / "long.wav", fx.sine(2.0, 16000), 16000, subtype="FLOAT")  # 198 frames > 128
    out = load_modality("audio", tmp_path / "long.wav", config=TINY)
    torch.testing.assert_close(out, _reference_fbank(fx.sine(2.0, 16000)[None], 16000, 32, 128),
                               atol=1e-4, rtol=1e-4)


def test_audio_train_masks_bands_before_normalisation(tmp_path):
    soundfile.write(tmp_path / "a.wav", fx.sine(2.0, 16000), 16000)
    clean = load_modality("audio", tmp_path / "a.wav", config=TINY)
    masked_value = (0 - (-4.2677393)) / (4.5689974 * 2)  # a zeroed fbank entry after normalisation
    any_masked = False
    for seed in range(6):
        torch.manual_seed(seed)
        aug = load_modality("audio", tmp_path / "a.wav", train=True, config=TINY)
        changed = aug != clean
        torch.testing.assert_close(aug[changed], torch.full_like(aug[changed], masked_value))
        rows = changed.all(dim=2).squeeze(0).nonzero().flatten()  # fully masked mel bins
        assert len(rows) <= 12 and (len(rows) == 0 or rows[-1] - rows[0] + 1 == len(rows))  # one band, <= 48/4
        any_masked |= bool(changed.any())
    assert any_masked


def test_audio_m4a_through_pyav(tmp_path):
    samples = fx.sine(2.0, 16000)
    fx.write_m4a(tmp_path / "a.m4a", samples, 16000)
    soundfile.write(tmp_path / "a.wav", samples, 16000)
    with pytest.raises(Exception):
        soundfile.read(tmp_path / "a.m4a")  # not soundfile's: the PyAV path decodes it
    aac, wav = (load_modality("audio", tmp_path / n, config=TINY) for n in ("a.m4a", "a.wav"))
    assert aac.shape == (1, 32, 128)
    assert (aac - wav)[..., 20:120].abs().mean() < 0.05  # lossy AAC of the same sine


# ------------------------------------------------------------------------------------------------ point
def _check_pc_norm(out: torch.Tensor):
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert abs(out[:, :3].norm(dim=1).max().item() - 1) < 1e-5


def test_point_npy_eval_subsample_and_pc_norm(tmp_path):
    cloud = (np.random.default_rng(0).random((5000, 6)) * [4, 2, 1, 1, 1, 1]).astype(np.float32)
    np.save(tmp_path / "p.npy", cloud)
    out = load_modality("point", tmp_path / "p.npy", config=TINY)
    assert out.shape == (1024, 6)
    _check_pc_norm(out)
    idx = torch.linspace(0, 4999, 1024).long()  # evenly spaced, deterministic
    torch.testing.assert_close(out[:, 3:], torch.from_numpy(cloud)[idx, 3:])  # colours untouched
    xyz = torch.from_numpy(cloud)[idx, :3]
    xyz = xyz - xyz.mean(0)
    torch.testing.assert_close(out[:, :3], xyz / xyz.norm(dim=1).max())


def test_point_train_random_subset_and_padding(tmp_path):
    cloud = np.random.default_rng(1).random((3000, 6)).astype(np.float32)
    np.save(tmp_path / "p.npy", cloud)
    torch.manual_seed(0)
    a = load_modality("point", tmp_path / "p.npy", train=True, config=TINY)
    torch.manual_seed(0)
    b = load_modality("point", tmp_path / "p.npy", train=True, config=TINY)
    torch.testing.assert_close(a, b)  # reproducible from torch's seed
    colours = {tuple(r) for r in np.round(cloud[:, 3:], 5).tolist()}
    picked = [tuple(r) for r in np.round(a[:, 3:].numpy(), 5).tolist()]
    assert len(set(picked)) == 1024 and set(picked) <= colours  # distinct points of the source
    small = cloud[:600]
    np.save(tmp_path / "small.npy", small)
    out = load_modality("point", tmp_path / "small.npy", config=TINY)
    assert out.shape == (1024, 6)
    torch.testing.assert_close(out[:600, 3:], torch.from_numpy(small[:, 3:]))  # every point kept, in order
    torch.testing.assert_close(out[600:], out[:424])  # then repeated cyclically


def test_point_colour_conventions(tmp_path):
    xyz = np.random.default_rng(2).random((1024, 3)).astype(np.float32)
    np.save(tmp_path / "xyz.npy", xyz)
    assert torch.equal(load_modality("point", tmp_path / "xyz.npy", config=TINY)[:, 3:], torch.zeros(1024, 3))
    rgb255 = np.concatenate([xyz, np.full((1024, 3), 204, np.float32)], axis=1)
    np.save(tmp_path / "rgb255.npy", rgb255)
    torch.testing.assert_close(load_modality("point", tmp_path / "rgb255.npy", config=TINY)[:, 3:],
                               torch.full((1024, 3), 0.8))
    torch.save(torch.from_numpy(rgb255).T.contiguous(), tmp_path / "finetune.pt")  # (6, N) finetune layout
    torch.testing.assert_close(load_modality("point", tmp_path / "finetune.pt", config=TINY),
                               load_modality("point", tmp_path / "rgb255.npy", config=TINY))


def test_point_degenerate_cloud_is_not_divided_by_zero(tmp_path):
    np.save(tmp_path / "same.npy", np.tile(np.array([[1, 2, 3, 0.1, 0.2, 0.3]], np.float32), (2000, 1)))
    out = load_modality("point", tmp_path / "same.npy", config=TINY)
    assert torch.isfinite(out).all() and torch.equal(out[:, :3], torch.zeros(1024, 3))


@pytest.mark.parametrize("ext", ["ply", "glb"])
def test_point_from_coloured_mesh(tmp_path, ext):
    box = fx.face_coloured_box() if ext == "ply" else fx.vertex_coloured_box()
    box.export(tmp_path / f"box.{ext}")
    out = load_modality("point", tmp_path / f"box.{ext}", config=TINY)
    assert out.shape == (1024, 6)
    _check_pc_norm(out)
    torch.testing.assert_close(out, load_modality("point", tmp_path / f"box.{ext}", config=TINY))  # eval fixed
    rgb = out[:, 3:]
    if ext == "ply":  # face colours: red or blue, both present
        colours = {tuple(c) for c in rgb.tolist()}
        assert colours == {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}
    else:  # vertex colours blended between red and green
        torch.testing.assert_close(rgb[:, 0] + rgb[:, 1], torch.ones(1024), atol=1e-5, rtol=0)
        assert (rgb[:, 2] == 0).all() and rgb[:, 0].min() < 0.1 and rgb[:, 0].max() > 0.9
    torch.manual_seed(0)
    assert not torch.equal(load_modality("point", tmp_path / f"box.{ext}", train=True, config=TINY), out)


def test_point_from_obj_and_ply_point_cloud(tmp_path):
    import trimesh

    fx.vertex_coloured_box().export(tmp_path / "box.obj")
    out = load_modality("point", tmp_path / "box.obj", config=TINY)
    assert out.shape == (1024, 6) and (out[:, 5] == 0).all() and out[:, 3:5].sum(1).sub(1).abs().max() < 1e-5
    vertices = np.random.default_rng(3).random((100, 3))
    trimesh.PointCloud(vertices, colors=np.tile([255, 0, 0, 255], (100, 1))).export(tmp_path / "pc.ply")
    out = load_modality("point", tmp_path / "pc.ply", config=TINY)
    torch.testing.assert_close(out[:, 3:], torch.tensor([[1.0, 0.0, 0.0]]).expand(1024, 3))
    xyz = torch.from_numpy(vertices).float()[torch.arange(1024) % 100]  # the file's vertices, repeated
    xyz = xyz - xyz.mean(0)
    torch.testing.assert_close(out[:, :3], xyz / xyz.norm(dim=1).max(), atol=1e-5, rtol=0)
    textured = trimesh.creation.box()
    textured.visual = trimesh.visual.TextureVisuals(uv=np.random.default_rng(3).random((8, 2)),
                                                    image=Image.new("RGB", (4, 4), (0, 128, 255)))
    textured.export(tmp_path / "textured.obj")  # + material.mtl and its png
    torch.testing.assert_close(load_modality("point", tmp_path / "textured.obj", config=TINY)[:, 3:],
                               torch.tensor([[0.0, 128 / 255, 1.0]]).expand(1024, 3))
    trimesh.creation.box().export(tmp_path / "plain.stl")  # uncoloured mesh -> 0
    assert torch.equal(load_modality("point", tmp_path / "plain.stl", config=TINY)[:, 3:], torch.zeros(1024, 3))
    trimesh.PointCloud(vertices).export(tmp_path / "grey.ply")  # no colours -> 0, like (N, 3) arrays
    assert torch.equal(load_modality("point", tmp_path / "grey.ply", config=TINY)[:, 3:], torch.zeros(1024, 3))


# ------------------------------------------------------------------------------------------------ depth / normal
@pytest.mark.parametrize("modality", ["depth", "normal", "rgbd"])
def test_paired_map_gets_the_same_crop_as_rgb(files, modality):
    for seed in range(4):
        torch.manual_seed(seed)
        out = load_modality(modality, files / "rgb.png", rgb=files / "rgb.png", train=True, config=TINY)
        assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
        torch.testing.assert_close(out[0], out[1])


def test_paired_eval_and_resizing_to_rgb_size(files, tmp_path):
    rgb = Image.open(files / "rgb.png")
    rgb.resize((32, 24)).convert("L").save(tmp_path / "depth.png")  # half-size grey map
    out = load_modality("depth", tmp_path / "depth.png", rgb=files / "rgb.png")
    assert out.shape == (2, 3, 224, 224)
    grey = unnormalize(out[1])
    torch.testing.assert_close(grey[0], grey[1], atol=1e-3, rtol=0)  # grey map -> 3 identical channels
    torch.testing.assert_close(grey[0], grey[2], atol=1e-3, rtol=0)
    eval_tf = clip_pipeline(T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224))
    depth = Image.open(tmp_path / "depth.png").convert("RGB").resize(rgb.size, Image.Resampling.BICUBIC)
    torch.testing.assert_close(out[1], eval_tf(depth))
    torch.testing.assert_close(out[0], eval_tf(rgb.convert("RGB")))


def test_paired_16bit_depth_is_scaled_by_its_max(tmp_path):
    grey = np.random.default_rng(4).integers(0, 256, (40, 40)).astype(np.uint16)
    grey[0, 0] = 255
    Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(grey * 257).save(tmp_path / "depth16.png")  # 16-bit PNG, max 65535
    assert Image.open(tmp_path / "depth16.png").mode.startswith("I")
    out = load_modality("depth", tmp_path / "depth16.png", rgb=tmp_path / "rgb.png", config=TINY)
    torch.testing.assert_close(out[0], out[1])


# ------------------------------------------------------------------------------------------------ imu
def _imu_signal(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)[None] + 10000 * np.arange(6, dtype=np.float64)[:, None]  # (6, n)


def test_imu_window_with_timestamps(tmp_path):
    np.save(tmp_path / "imu.npy", _imu_signal(2000))  # float64, as np.zeros padding made it
    np.save(tmp_path / "ts.npy", 1000 + np.arange(2000) * 5.0)  # 200 Hz from 1 s, in ms
    out = load_modality("imu", tmp_path / "imu.npy", timestamps=tmp_path / "ts.npy", start=3.0, end=5.0)
    assert out.shape == (6, 400) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.from_numpy(_imu_signal(2000)[:, 400:800]).float())  # t >= 3000 ms
    np.save(tmp_path / "imu_t6.npy", _imu_signal(2000).T)  # (T, 6) is transposed
    torch.testing.assert_close(
        load_modality("imu", tmp_path / "imu_t6.npy", timestamps=tmp_path / "ts.npy", start=3.0), out)


def test_imu_resamples_100hz_to_200hz(tmp_path):
    signal = np.random.default_rng(5).standard_normal((6, 1000)).astype(np.float32)
    np.save(tmp_path / "imu.npy", signal)
    np.save(tmp_path / "ts.npy", np.arange(1000) * 10.0)  # 100 Hz
    out = load_modality("imu", tmp_path / "imu.npy", timestamps=tmp_path / "ts.npy", start=1.0, end=3.0)
    ref = torchaudio.functional.resample(torch.from_numpy(signal[:, 100:300]), 100, 200)
    assert ref.shape == (6, 400) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    no_ts = load_modality("imu", tmp_path / "imu.npy", rate=100, start=1.0, end=3.0, config=TINY)
    torch.testing.assert_close(no_ts, ref)
    with pytest.raises(InputError, match="either 'timestamps' or 'rate'"):
        load_modality("imu", tmp_path / "imu.npy", timestamps=tmp_path / "ts.npy", rate=100, start=1.0)


def test_imu_whole_recording_is_padded_and_truncated(tmp_path):
    np.save(tmp_path / "short.npy", _imu_signal(300).astype(np.float32))
    out = load_modality("imu", tmp_path / "short.npy")
    assert out.shape == (6, 400) and torch.equal(out[:, 300:], torch.zeros(6, 100))
    torch.testing.assert_close(out[:, :300], torch.from_numpy(_imu_signal(300)).float())
    np.save(tmp_path / "long.npy", _imu_signal(900))
    torch.testing.assert_close(load_modality("imu", tmp_path / "long.npy"),
                               torch.from_numpy(_imu_signal(900)[:, :400]).float())


@pytest.mark.parametrize("window, ts, problem", [
    ((9.0, 11.0), np.arange(2000) * 5.0, "beyond the last"),  # recording ends at 9.995 s
    ((1.0, 1.02), np.arange(2000) * 5.0, "fewer than 10"),
    ((1.0, 3.0), np.concatenate([np.arange(100) * 5.0, 20000 + np.arange(1900) * 5.0]), "more than 4"),
])
def test_imu_rejects_bad_windows_like_the_original(tmp_path, window, ts, problem):
    np.save(tmp_path / "imu.npy", _imu_signal(2000))
    np.save(tmp_path / "ts.npy", ts)
    with pytest.raises(InputError, match=problem) as err:
        load_modality("imu", tmp_path / "imu.npy", timestamps=tmp_path / "ts.npy", start=window[0], end=window[1])
    assert "imu.npy" in str(err.value)


# ------------------------------------------------------------------------------------------------ fmri
def test_fmri_mean_over_repetitions(tmp_path):
    reps = np.random.default_rng(6).standard_normal((3, 15724))  # float64
    np.save(tmp_path / "f.npy", reps)
    out = load_modality("fmri", tmp_path / "f.npy")
    assert out.shape == (1, 15724) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.from_numpy(reps.mean(0)[None]).float())
    np.save(tmp_path / "single.npy", reps[0])
    torch.testing.assert_close(load_modality("fmri", tmp_path / "single.npy"), torch.from_numpy(reps[:1]).float())
    with pytest.raises(InputError, match="15724 voxels but the model expects 100") as err:
        load_modality("fmri", tmp_path / "f.npy", config=OneLLMConfig.preset("tiny", **{"inputs.fmri.voxels": 100}))
    assert "f.npy" in str(err.value)


# ------------------------------------------------------------------------------------------------ manifest dicts
def test_manifest_dict_source(tmp_path, files):
    np.save(tmp_path / "imu.npy", _imu_signal(2000))
    np.save(tmp_path / "ts.npy", np.arange(2000) * 5.0)
    entry = {"modality": "imu", "path": str(tmp_path / "imu.npy"), "timestamps": str(tmp_path / "ts.npy"),
             "start": 1.0}
    torch.testing.assert_close(load_modality("imu", entry), torch.from_numpy(_imu_signal(2000)[:, 200:600]).float())
    torch.testing.assert_close(load_modality("imu", entry, start=2.0),  # explicit options win
                               torch.from_numpy(_imu_signal(2000)[:, 400:800]).float())
    depth = {"modality": "rgbd", "path": str(files / "rgb.png"), "rgb": str(files / "rgb.png")}
    assert load_modality("depth", depth, config=TINY).shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match="loaded as audio"):
        load_modality("audio", entry)
    with pytest.raises(InputError, match="unknown option"):
        load_modality("image", {"path": str(files / "rgb.png"), "size": 3})


# ------------------------------------------------------------------------------------------------ bad inputs
def _corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return path


def _nan_wav(path: Path) -> Path:
    samples = fx.sine(1.0, 16000)
    samples[100] = np.nan
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    return path


def _npy(array: np.ndarray):
    return lambda path: (np.save(path, array), path)[1]


BAD_INPUTS = [  # (modality, file name, writer, expected problem, options)
    ("image", "missing.png", None, "not found", {}),
    ("video", "missing.mp4", None, "not found", {}),
    ("audio", "missing.wav", None, "not found", {}),
    ("point", "missing.npy", None, "not found", {}),
    ("imu", "missing.npy", None, "not found", {}),
    ("fmri", "missing.npy", None, "not found", {}),
    ("depth", "missing.png", None, "not found", {"rgb": "x.png"}),
    ("image", "corrupt.png", _corrupt, "cannot decode image", {}),
    ("image", "corrupt.jpg", _corrupt, "cannot decode image", {}),
    ("video", "corrupt.mp4", _corrupt, "cannot decode video", {}),
    ("video", "corrupt_av.mp4", _corrupt, "cannot decode video", {"backend": "av"}),
    ("audio", "corrupt.wav", _corrupt, "cannot decode audio", {}),
    ("audio", "corrupt.mp3", _corrupt, "cannot decode audio", {}),
    ("point", "corrupt.npy", _corrupt, "cannot read .npy", {}),
    ("point", "corrupt.ply", _corrupt, "cannot load mesh", {}),
    ("point", "corrupt.obj", _corrupt, "cannot load mesh", {}),
    ("imu", "corrupt.npy", _corrupt, "cannot read .npy", {}),
    ("fmri", "corrupt.npy", _corrupt, "cannot read .npy", {}),
    ("point", "shape.npy", _npy(np.zeros((100, 4))), "shape", {}),
    ("imu", "shape.npy", _npy(np.zeros((5, 100))), "shape", {}),
    ("fmri", "shape.npy", _npy(np.zeros((2, 3, 15724))), "shape", {}),
    ("point", "nan.npy", _npy(np.full((100, 6), np.nan)), "NaN", {}),
    ("imu", "nan.npy", _npy(np.full((6, 400), np.inf)), "NaN", {}),
    ("fmri", "nan.npy", _npy(np.full((2, 15724), np.nan)), "NaN", {}),
    ("audio", "nan.wav", _nan_wav, "NaN", {}),
    ("audio", "empty.wav", lambda p: (soundfile.write(p, np.zeros(0, np.float32), 16000), p)[1], "empty", {}),
    ("audio", "short.wav", lambda p: (soundfile.write(p, fx.sine(0.01, 16000), 16000), p)[1], "too short", {}),
    ("video", "zero.mp4", fx.write_no_video_stream, "no frames", {}),
    ("depth", "nodepthrgb.png", lambda p: (Image.new("L", (8, 8)).save(p), p)[1], "paired RGB image is required", {}),
    ("normal", "norgb.png", lambda p: (Image.new("RGB", (8, 8)).save(p), p)[1], "paired RGB image is required", {}),
    ("image", "picture.xyz", lambda p: (p.write_bytes(b"x"), p)[1], "supported: .jpg", {}),
    ("audio", "sound.txt", lambda p: (p.write_text("x"), p)[1], "unsupported file extension", {}),
]


@pytest.mark.parametrize("modality, name, writer, problem, options", BAD_INPUTS,
                         ids=[f"{m}-{n}" for m, n, *_ in BAD_INPUTS])
def test_bad_input_raises_input_error_naming_the_file(tmp_path, modality, name, writer, problem, options):
    path = writer(tmp_path / name) if writer else tmp_path / name
    with pytest.raises(InputError) as err:
        load_modality(modality, path, config=TINY, **options)
    assert name in str(err.value) and problem in str(err.value)
    assert err.value.path is not None and Path(err.value.path).name == name
