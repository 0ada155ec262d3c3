"""The PyAV sampler on real videos that the tests encode, every codec and edge case."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.media.decode import DecodeLimits, cuda_decode_available, sample_video
from skyra_stream.media.samples import VideoSpec, read_index, write_audio_only, write_video
from skyra_stream.model.prompt import resized_size

LINSPACE_60 = [int(i) for i in np.linspace(0, 59, 16)]

CODECS = [
    pytest.param("a.mp4", VideoSpec(), "h264", id="h264-mp4"),
    pytest.param("b.mkv", VideoSpec(codec="libx265", pix_fmt="yuv420p10le"), "hevc", id="hevc10"),
    pytest.param("c.webm", VideoSpec(codec="libvpx-vp9"), "vp9", id="vp9-webm"),
    pytest.param("d.mkv", VideoSpec(codec="libsvtav1"), None, id="av1"),
    pytest.param("e.avi", VideoSpec(codec="mpeg4"), "mpeg4", id="mpeg4-avi"),
    pytest.param(
        "f.mov", VideoSpec(codec="prores_ks", pix_fmt="yuv422p10le"), "prores", id="prores"
    ),
    pytest.param("g.ts", VideoSpec(), "h264", id="h264-mpegts"),
    pytest.param("i.mp4", VideoSpec(options={"bf": "3"}, gop=12), "h264", id="h264-bframes"),
]


@pytest.mark.parametrize(("name", "spec", "codec"), CODECS)
def test_codecs_give_the_linspace_frames_in_order(
    tmp_path: Path, name: str, spec: VideoSpec, codec: str | None
) -> None:
    video = sample_video(write_video(tmp_path / name, spec))
    assert [read_index(f) for f in video.frames] == LINSPACE_60
    assert video.info.frames_sampled == 16
    assert video.info.width == 320
    assert video.info.height == 240
    if codec is not None:
        assert video.info.codec == codec
    else:
        assert "av1" in video.info.codec or "dav1d" in video.info.codec
    assert video.info.timestamps_s[0] == pytest.approx(0.0)
    assert video.info.timestamps_s[-1] == pytest.approx(59 / 30, abs=1e-3)
    assert video.info.duration_s == pytest.approx(2.0, abs=0.05)
    for frame in video.frames:
        assert frame.dtype == np.uint8
        assert frame.shape == (256, 341, 3)


def test_timestamps_are_presentation_times_of_the_chosen_frames(tmp_path: Path) -> None:
    video = sample_video(write_video(tmp_path / "a.mp4", VideoSpec()))
    assert video.info.timestamps_s == pytest.approx([i / 30 for i in LINSPACE_60], abs=1e-3)


def test_gif(tmp_path: Path) -> None:
    spec = VideoSpec(codec="gif", pix_fmt="rgb8", fps=10, frames=20)
    video = sample_video(write_video(tmp_path / "g.gif", spec))
    assert [read_index(f) for f in video.frames] == [int(i) for i in np.linspace(0, 19, 16)]
    assert video.info.codec == "gif"


def test_variable_frame_rate_spaces_samples_over_frames_not_seconds(tmp_path: Path) -> None:
    # 20 frames in the first second, then 20 frames over four seconds.
    times = [i * 0.05 for i in range(20)] + [1.0 + i * 0.2 for i in range(20)]
    spec = VideoSpec(frames=40, times_s=times)
    video = sample_video(write_video(tmp_path / "vfr.mkv", spec))
    indices = [int(i) for i in np.linspace(0, 39, 16)]
    assert [read_index(f) for f in video.frames] == indices
    assert video.info.timestamps_s == pytest.approx([times[i] for i in indices], abs=1e-3)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_gives_upright_frames_and_displayed_size(
    tmp_path: Path, rotation: int
) -> None:
    video = sample_video(write_video(tmp_path / "r.mp4", VideoSpec(rotation=rotation)))
    quarter = rotation // 90
    if quarter % 2:
        assert (video.info.width, video.info.height) == (240, 320)
        assert video.frames[0].shape == (341, 256, 3)
    else:
        assert (video.info.width, video.info.height) == (320, 240)
    # Undo the display rotation: the coded frame's index band is readable again, which
    # proves the frames were turned by exactly the display matrix's angle.
    unrotated = [np.rot90(f, k=-quarter) for f in video.frames]
    assert [read_index(f) for f in unrotated] == LINSPACE_60


def test_odd_dimensions(tmp_path: Path) -> None:
    spec = VideoSpec(codec="ffv1", width=321, height=241, pix_fmt="yuv444p")
    video = sample_video(write_video(tmp_path / "odd.mkv", spec))
    assert (video.info.width, video.info.height) == (321, 241)
    assert video.frames[0].shape == (256, resized_size(321, 241)[0], 3)
    assert [read_index(f) for f in video.frames] == LINSPACE_60


def test_portrait_video_keeps_short_side_256(tmp_path: Path) -> None:
    video = sample_video(write_video(tmp_path / "p.mp4", VideoSpec(width=240, height=426)))
    assert video.frames[0].shape == (454, 256, 3)


def test_fewer_than_16_frames_uses_what_exists(tmp_path: Path) -> None:
    video = sample_video(write_video(tmp_path / "short.mp4", VideoSpec(frames=5)))
    assert video.info.frames_sampled == 5
    assert [read_index(f) for f in video.frames] == [0, 1, 2, 3, 4]


def test_single_frame_video(tmp_path: Path) -> None:
    video = sample_video(write_video(tmp_path / "one.mp4", VideoSpec(frames=1)))
    assert video.info.frames_sampled == 1
    assert video.info.timestamps_s == [0.0]


def test_video_with_audio_track(tmp_path: Path) -> None:
    video = sample_video(write_video(tmp_path / "av.mp4", VideoSpec(audio=True)))
    assert [read_index(f) for f in video.frames] == LINSPACE_60


def test_reads_from_a_file_object(tmp_path: Path) -> None:
    data = write_video(tmp_path / "a.mp4", VideoSpec()).read_bytes()
    video = sample_video(io.BytesIO(data))
    assert [read_index(f) for f in video.frames] == LINSPACE_60


def test_long_gop_seeks_land_on_exact_frames(tmp_path: Path) -> None:
    spec = VideoSpec(width=160, height=96, fps=25, frames=1500, gop=250)
    video = sample_video(write_video(tmp_path / "long.mp4", spec))
    assert [read_index(f) for f in video.frames] == [int(i) for i in np.linspace(0, 1499, 16)]


# -- inputs that are not videos ------------------------------------------------------------


def _code(source: object, limits: DecodeLimits | None = None) -> ErrorCode:
    with pytest.raises(SkyraError) as err:
        sample_video(source, limits)  # type: ignore[arg-type]
    return err.value.code


def test_audio_only_is_no_video_stream(tmp_path: Path) -> None:
    assert _code(write_audio_only(tmp_path / "a.m4a")) is ErrorCode.NO_VIDEO_STREAM


def test_empty_file_is_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _code(str(tmp_path / "empty.mp4")) is ErrorCode.NOT_A_VIDEO


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(200_000))
    assert _code(str(path)) in (ErrorCode.NOT_A_VIDEO, ErrorCode.DECODE_FAILED)


def test_text_is_not_a_video_even_though_ffmpeg_would_play_it(tmp_path: Path) -> None:
    # FFmpeg's `tty` demuxer opens any text file as a video stream.
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 5000)
    assert _code(str(path)) is ErrorCode.NOT_A_VIDEO


def test_png_image_is_not_a_video(tmp_path: Path) -> None:
    import av

    path = tmp_path / "still.png"
    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = 64, 64, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    assert _code(str(path)) is ErrorCode.NOT_A_VIDEO


def test_truncated_mp4_without_index_is_not_a_video(tmp_path: Path) -> None:
    data = write_video(tmp_path / "a.mp4", VideoSpec()).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert _code(str(cut)) is ErrorCode.NOT_A_VIDEO


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_streamable_files_fail_cleanly_or_use_what_is_there(
    tmp_path: Path, fraction: float
) -> None:
    for name, spec in (
        ("a.ts", VideoSpec()),
        ("a.mkv", VideoSpec()),
        ("fs.mp4", VideoSpec(options={"movflags": "+faststart"})),
    ):
        data = write_video(tmp_path / name, spec).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(data[: int(len(data) * fraction)])
        try:
            video = sample_video(str(cut))
        except SkyraError as exc:
            assert exc.code in (ErrorCode.NOT_A_VIDEO, ErrorCode.DECODE_FAILED)
        else:
            assert 1 <= video.info.frames_sampled <= 16
            assert all(f.shape[0] == 256 for f in video.frames)


# -- limits --------------------------------------------------------------------------------


def test_pixel_cap_rejects_before_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "big.mp4", VideoSpec(width=1280, height=720, frames=3))
    assert _code(str(path), DecodeLimits(max_pixels=640 * 480)) is ErrorCode.VIDEO_TOO_LARGE


@pytest.mark.heavy  # writes and probes an 8K stream (~8 s)
def test_8k_decompression_bomb_is_video_too_large(tmp_path: Path) -> None:
    # A few KB on disk, 33 Mpixel per frame once decoded.
    spec = VideoSpec(width=7680, height=4320, frames=2, options={"preset": "ultrafast"})
    path = write_video(tmp_path / "bomb.mp4", spec)
    assert os.path.getsize(path) < 2_000_000
    assert _code(str(path)) is ErrorCode.VIDEO_TOO_LARGE


def test_duration_cap(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", VideoSpec())
    assert _code(str(path), DecodeLimits(max_duration_s=1.0)) is ErrorCode.VIDEO_TOO_LONG


def test_forty_minute_video_is_too_long_by_default(tmp_path: Path) -> None:
    spec = VideoSpec(width=64, height=64, fps=1, frames=40 * 60, options={"preset": "ultrafast"})
    path = write_video(tmp_path / "40min.mp4", spec)
    assert _code(str(path)) is ErrorCode.VIDEO_TOO_LONG


def test_decode_timeout(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", VideoSpec())
    assert _code(str(path), DecodeLimits(timeout_s=1e-9)) is ErrorCode.DECODE_TIMEOUT


# -- skipping frames nothing references ------------------------------------------------------

SKIP_CORPUS = [
    pytest.param(VideoSpec(options={"bf": "3"}, gop=48, frames=240), "mp4", id="h264-bframes"),
    pytest.param(
        VideoSpec(options={"bf": "3", "x264-params": "b-pyramid=normal"}, gop=250, frames=300),
        "mp4",
        id="h264-bpyramid-longgop",
    ),
    pytest.param(
        VideoSpec(options={"bf": "2", "x264-params": "open-gop=1"}, gop=30, frames=150),
        "mkv",
        id="h264-opengop",
    ),
    pytest.param(
        VideoSpec(options={"bf": "3"}, times_s=[i * i / 400 for i in range(120)], frames=120),
        "mp4",
        id="h264-vfr",
    ),
    pytest.param(
        VideoSpec(codec="libx265", gop=60, frames=180, options={"x265-params": "log-level=error"}),
        "mp4",
        id="hevc-bframes",
    ),
    pytest.param(
        VideoSpec(codec="mpeg4", options={"bf": "2"}, gop=30, frames=120), "avi", id="mpeg4-bframes"
    ),
    pytest.param(VideoSpec(codec="libsvtav1", frames=120), "mkv", id="av1"),
    pytest.param(VideoSpec(codec="libvpx-vp9", frames=90), "webm", id="vp9"),
    pytest.param(VideoSpec(options={"bf": "3"}, gop=24, frames=120), "ts", id="h264-mpegts"),
]


@pytest.mark.parametrize(("spec", "ext"), SKIP_CORPUS)
def test_skipping_unreferenced_frames_keeps_the_samples_bit_identical(
    tmp_path: Path, spec: VideoSpec, ext: str
) -> None:
    path = write_video(tmp_path / f"clip.{ext}", spec)
    every = sample_video(path, DecodeLimits(threads=1, skip_nonref=False))
    skipping = sample_video(path, DecodeLimits(threads=1, skip_nonref=True))
    assert skipping.info == every.info
    assert len(skipping.frames) == len(every.frames) == 16
    for a, b in zip(skipping.frames, every.frames, strict=True):
        assert np.array_equal(a, b)
    assert skipping.frames_decoded <= every.frames_decoded
    print(f"{spec.codec} {ext}: {every.frames_decoded} -> {skipping.frames_decoded} frames")


def test_skipping_decodes_fewer_frames_where_b_frames_are_unreferenced(tmp_path: Path) -> None:
    # The check above cannot tell a skip that never happens from one that works.
    spec = VideoSpec(options={"bf": "3", "x264-params": "b-pyramid=none"}, gop=250, frames=300)
    path = write_video(tmp_path / "b.mp4", spec)
    every = sample_video(path, DecodeLimits(threads=1, skip_nonref=False))
    skipping = sample_video(path, DecodeLimits(threads=1, skip_nonref=True))
    assert skipping.frames_decoded < 0.8 * every.frames_decoded


# -- decoding on the GPU (NVDEC) ------------------------------------------------------------

NVDEC_CORPUS = [
    pytest.param(VideoSpec(), "mp4", id="h264"),
    pytest.param(VideoSpec(options={"bf": "3"}, gop=24, frames=90), "mp4", id="h264-bframes"),
    pytest.param(
        VideoSpec(codec="libx265", options={"x265-params": "log-level=error"}), "mkv", id="hevc"
    ),
    pytest.param(
        VideoSpec(
            codec="libx265", pix_fmt="yuv420p10le", options={"x265-params": "log-level=error"}
        ),
        "mkv",
        id="hevc10",
    ),
    pytest.param(VideoSpec(codec="libvpx-vp9"), "webm", id="vp9"),
    pytest.param(VideoSpec(codec="libsvtav1"), "mkv", id="av1"),
    pytest.param(VideoSpec(codec="mpeg4"), "avi", id="mpeg4"),
    pytest.param(VideoSpec(pix_fmt="yuv444p"), "mp4", id="h264-444-software"),
]
NVDEC_MIN_PSNR_DB = 40.0  # decoders are bit-exact; only colour conversion paths may differ


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.skipif(not cuda_decode_available(), reason="no GPU this process can decode on")
@pytest.mark.parametrize(("spec", "ext"), NVDEC_CORPUS)
def test_nvdec_gives_the_software_frames(tmp_path: Path, spec: VideoSpec, ext: str) -> None:
    path = write_video(tmp_path / f"clip.{ext}", spec)
    gpu = sample_video(path, DecodeLimits(device="cuda"))
    cpu = sample_video(path, DecodeLimits(device="cpu"))
    assert gpu.info == cpu.info
    worst = min(_psnr(a, b) for a, b in zip(gpu.frames, cpu.frames, strict=True))
    print(f"{spec.codec} {spec.pix_fmt}: on {gpu.decoded_on} {gpu.fallback}, PSNR {worst:.1f} dB")
    assert worst >= NVDEC_MIN_PSNR_DB
    if spec.pix_fmt == "yuv444p":
        assert gpu.fallback is not None
        assert gpu.fallback[0] == "format"


@pytest.mark.skipif(cuda_decode_available(), reason="a GPU is here: the test above covers it")
def test_asking_for_the_gpu_without_one_decodes_in_software_and_says_why(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", VideoSpec())
    for source in (path, io.BytesIO(path.read_bytes())):
        video = sample_video(source, DecodeLimits(device="cuda"))
        assert video.decoded_on == "cpu"
        assert video.fallback is not None
        assert video.fallback[0] == "device"
        assert [read_index(f) for f in video.frames] == LINSPACE_60
    # A bad input is still the input's fault, with the software path's code.
    assert _code(io.BytesIO(b"\x00" * 4096), DecodeLimits(device="cuda")) is ErrorCode.NOT_A_VIDEO


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "size", "kind"),
    [
        ("h264", "yuv420p", (1920, 1080), None),
        ("h264", "yuv420p10le", (1920, 1080), "format"),
        ("h264", "yuv444p", (1920, 1080), "format"),
        ("hevc", "yuv420p10le", (3840, 2160), None),
        ("prores", "yuv422p10le", (1920, 1080), "codec"),
        ("gif", "bgr8", (320, 240), "codec"),
        ("hevc", "yuv420p", (16384, 64), "size"),
        ("h264", "yuv420p", (32, 32), "size"),
    ],
)
def test_what_nvdec_cannot_decode_goes_to_software_without_trying(
    codec: str, pix_fmt: str, size: tuple[int, int], kind: str | None
) -> None:
    from types import SimpleNamespace

    from skyra_stream.media.decode import _NoHardwareError, _Sampler

    cc = SimpleNamespace(
        name=codec, format=SimpleNamespace(name=pix_fmt), width=size[0], height=size[1]
    )
    if kind is None:
        _Sampler._check_nvdec(cc)
    else:
        with pytest.raises(_NoHardwareError) as err:
            _Sampler._check_nvdec(cc)
        assert err.value.kind == kind
