"""Sample the 16 frames Skyra sees from any video, with bounded cost and memory.

Why a two-step sampler: the contract wants frames spaced evenly over the frame timeline
(np.linspace over frame indices, first and last included). Demuxing every packet without
decoding gives that timeline exactly, variable frame rate included, for a fraction of the cost
of decoding; then each sample is reached by seeking to the keyframe before it and decoding
forward, so the decode cost depends on GOP length, not on the video's duration.

Untrusted input is bounded before it costs anything: the container format must be a video
container we expect, the coded size is checked against the pixel cap before the first frame is
decoded (decompression bombs), the duration against its cap, and a wall-clock deadline is
checked between packets and frames.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import io
import itertools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import av
import av.codec.hwaccel
import av.error
import numpy as np
import numpy.typing as npt
from av.codec.hwaccel import HWAccel

from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.messages import VideoInfo
from skyra_stream.model.prompt import NUM_FRAMES, SHORT_SIDE, resized_size

RGBFrame = npt.NDArray[np.uint8]

# Demuxers we accept. Probing arbitrary bytes can otherwise pick exotic demuxers (FFmpeg's
# `tty` turns any text file into a "video"), which widens the attack surface for nothing.
ALLOWED_FORMATS = frozenset(
    {
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "avi",
        "mpegts",
        "mpeg",
        "flv",
        "gif",
        "ogg",
        "asf",
        "mxf",
        "ivf",
        "nut",
        "h264",
        "hevc",
        "m4v",
        "obu",
    }
)


_PROBED_STREAMS = 32  # stream_options apply by stream index; more streams than this is absurd


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on what one video may cost to decode."""

    max_pixels: int = 3840 * 2160
    max_duration_s: float = 30 * 60.0
    timeout_s: float = 60.0
    num_frames: int = NUM_FRAMES
    short_side: int = SHORT_SIDE
    # FFmpeg decoder threads per video; 0 lets FFmpeg choose (about one per core). Set 1
    # when many videos decode at once, so that they do not oversubscribe the cores.
    threads: int = 0
    # Rolling forward from a keyframe to a sample, frames that no other frame references and
    # that are not a sample are not decoded at all (FFmpeg's skip_frame=NONREF, lifted for
    # the samples' own packets). The samples are bit-identical either way (tests/test_frames).
    skip_nonref: bool = True
    # "cuda": decode on the GPU's video engines (NVDEC), falling back to software per video
    # when the GPU cannot take it (the reason is in SampledVideo.fallback). A video that
    # fails on the GPU is tried once more in software, each try with its own timeout_s.
    device: str = "cpu"
    # Long videos: longer than `window_threshold_s`, a video is sampled as windows of at
    # most `window_s` seconds, each with its own `num_frames` over its own span, in one
    # decode pass. Up to `max_windows` tile the whole video; a longer one gets `max_windows`
    # windows of `window_s` spread evenly over it (the gaps are reported as coverage).
    # None: one window, whatever the length.
    window_s: float | None = None
    window_threshold_s: float = 60.0
    max_windows: int = 8


@dataclass(frozen=True, slots=True)
class Window:
    """One span of a long video, sampled like a whole short one (timestamps on the video's
    clock, as the model reads them)."""

    start_s: float
    end_s: float
    frames: list[RGBFrame]
    timestamps_s: list[float]


def window_spans(duration_s: float, limits: DecodeLimits) -> list[tuple[float, float]]:
    """The spans a video of `duration_s` is analysed as: one, or tiling windows, or
    `max_windows` spread evenly when tiling would need more."""
    if (
        limits.window_s is None
        or limits.max_windows <= 1
        or duration_s <= limits.window_threshold_s
    ):
        return [(0.0, duration_s)]
    needed = math.ceil(duration_s / limits.window_s)
    if needed <= limits.max_windows:
        step = duration_s / needed
        return [(k * step, (k + 1) * step) for k in range(needed)]
    count, length = limits.max_windows, limits.window_s
    stride = (duration_s - length) / (count - 1) if count > 1 else 0.0
    return [(k * stride, k * stride + length) for k in range(count)]


# Decoders whose skip_frame is honoured per packet, as this sampler switches it. Others (dav1d,
# libvpx) read it once when the decoder opens, or not at all: they decode every frame.
SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})


@dataclass(frozen=True, slots=True)
class SampledVideo:
    frames: list[RGBFrame]
    info: VideoInfo
    # What the sampling cost, for benchmarks and tests (not part of any message): frames the
    # decoder produced to reach the samples, and CPU seconds of this thread spent scaling
    # and converting the samples to RGB.
    frames_decoded: int = 0
    convert_cpu_s: float = 0.0
    decoded_on: str = "cpu"
    # Long videos: the windows, each with its own frames (which `frames` holds all of, in
    # time order); empty when the video is one window.
    windows: list[Window] = dataclasses.field(default_factory=list)
    # Why a video asked for the GPU was decoded in software: (kind, message), kind one of
    # HARDWARE_FALLBACKS.
    fallback: tuple[str, str] | None = None

    @property
    def timestamps_s(self) -> list[float]:
        return self.info.timestamps_s


Source = str | os.PathLike[str] | IO[bytes]

# What NVDEC decodes (codec, then chroma formats it takes); the rest goes to software without
# trying. H.264 is 8-bit 4:2:0 only on every NVIDIA GPU; sizes outside NVDEC_SIDES neither.
NVDEC_CODECS: dict[str, frozenset[str] | None] = {
    "h264": frozenset({"yuv420p", "yuvj420p"}),
    "hevc": None,  # 8 to 12 bit, 4:2:0 and 4:4:4 on Turing and later
    "av1": None,
    "vp9": None,
    "vp8": None,
    "mpeg1video": None,
    "mpeg2video": None,
    "mpeg4": None,
    "vc1": None,
    "mjpeg": None,
}
NVDEC_SIDES = (48, 8192)
HARDWARE_FALLBACKS = ("device", "codec", "format", "size", "error")


class _NoHardwareError(Exception):
    """This video cannot be decoded on the GPU; `kind` is one of HARDWARE_FALLBACKS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@functools.cache
def cuda_decode_available() -> bool:
    """Whether this process can decode on an NVIDIA GPU: FFmpeg built with CUDA (the PyAV
    wheel is), a driver with its video capability, and a device: tried once on a clip made
    here."""
    if "cuda" not in av.codec.hwaccel.hwdevices_available():
        return False
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 60, np.uint8), "rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buf.seek(0)
    try:
        video = _sample(
            buf, DecodeLimits(num_frames=1), HWAccel("cuda", allow_software_fallback=False)
        )
    except (_NoHardwareError, SkyraError):
        return False
    return video.decoded_on == "cuda"


def describe(path: os.PathLike[str] | str, limits: DecodeLimits) -> dict[str, Any]:
    """`skyra-stream inspect`: the file as the model would see it (timestamps, displayed size,
    codec), or the dead-letter code the worker would give it, as one JSON-ready record."""
    try:
        video = sample_video(str(path), limits)
    except SkyraError as exc:
        return {
            "source": str(path),
            "status": "rejected",
            "error": {"code": exc.code.value, "message": exc.message},
        }
    h, w = video.frames[0].shape[:2]
    return {
        "source": str(path),
        "status": "ok",
        "frame_size": [w, h],
        "video": video.info.model_dump(),
    }


def sample_video(source: Source, limits: DecodeLimits | None = None) -> SampledVideo:
    """Decode `limits.num_frames` frames spread uniformly over the video, upright, RGB, with
    the short side scaled to `limits.short_side`, each with its presentation time."""
    limits = limits or DecodeLimits()
    if limits.device != "cuda":
        return _sample(source, limits, None)
    start = source.tell() if not isinstance(source, str | os.PathLike) else 0
    try:
        return _sample(source, limits, HWAccel("cuda", allow_software_fallback=False))
    except _NoHardwareError as exc:
        fallback = (exc.kind, str(exc))
    except SkyraError as exc:
        # The GPU path refused or broke: software decides whether the input is at fault
        # (it raises the same error) or the GPU was (it works). Checks made before any
        # decoding (size, duration, no video) give the same answer either way.
        if exc.code not in (ErrorCode.NOT_A_VIDEO, ErrorCode.DECODE_FAILED):
            raise
        fallback = ("error", exc.message)
    if not isinstance(source, str | os.PathLike):
        source.seek(start)
    video = _sample(source, limits, None)
    return dataclasses.replace(video, fallback=fallback)


def _sample(source: Source, limits: DecodeLimits, hwaccel: HWAccel | None) -> SampledVideo:
    deadline = time.monotonic() + limits.timeout_s
    try:
        container = av.open(  # type: ignore[call-overload]  # stubs say list[str]; dicts are right
            source,
            mode="r",
            metadata_errors="ignore",
            # Opening a file probes its streams, and probing decodes a frame: an 8K bomb cost
            # ~85 MiB before our pixel check ran (tests/test_limits.py). FFmpeg's own
            # max_pixels makes the probe refuse to decode past the cap; the header still
            # gives the size, and _check_pixels refuses it.
            stream_options=[{"max_pixels": str(limits.max_pixels)}] * _PROBED_STREAMS,
            hwaccel=hwaccel,
        )
    except Exception as exc:  # FFmpegError mostly; any failure to open is the input's
        if hwaccel is not None:  # ... or the GPU's: software will tell
            raise _NoHardwareError("device", f"opening on the GPU failed: {exc}") from None
        raise SkyraError(ErrorCode.NOT_A_VIDEO, f"not a readable container: {exc}") from None
    try:
        return _Sampler(container, limits, deadline, hwaccel is not None).run()
    except _NoHardwareError:
        raise
    except SkyraError:
        raise
    except av.error.FFmpegError as exc:
        raise SkyraError(ErrorCode.DECODE_FAILED, f"decode failed: {exc}") from None
    except Exception as exc:
        # Damaged files reach corners of PyAV that raise whatever they raise (found by
        # tests/test_fuzz_decoder.py); all of them are this input's fault, none may escape.
        raise SkyraError(ErrorCode.DECODE_FAILED, f"decode failed: {exc!r}") from None
    finally:
        container.close()


class _SeekFailedError(Exception):
    """A seek landed after its target or at the end: this file cannot be sampled by seeking."""


@dataclass(frozen=True, slots=True)
class _Timeline:
    pts: list[int]  # presentation timestamps of every frame, sorted
    keyframes: list[int]  # presentation timestamps of keyframes, sorted


class _Sampler:
    def __init__(
        self, container: Any, limits: DecodeLimits, deadline: float, hardware: bool = False
    ) -> None:
        self.container = container
        self.limits = limits
        self.deadline = deadline
        fmt = container.format.name
        if fmt not in ALLOWED_FORMATS:
            raise SkyraError(
                ErrorCode.NOT_A_VIDEO, f"container format {fmt!r} is not a video format"
            )
        streams = [
            s
            for s in container.streams.video
            if not (s.disposition & av.stream.Disposition.attached_pic)
        ]
        if not streams:
            raise SkyraError(ErrorCode.NO_VIDEO_STREAM, "the file holds no video stream")
        self.stream = streams[0]
        cc = self.stream.codec_context
        if cc is None:  # FFmpeg found a stream but no decoder for it
            raise SkyraError(ErrorCode.DECODE_FAILED, "no decoder for the video stream")
        self._check_pixels(cc.width, cc.height)
        self.hardware = hardware
        if hardware:
            self._check_nvdec(cc)
        cc.thread_count = limits.threads
        self._skip = limits.skip_nonref and cc.name in SKIP_NONREF_CODECS
        self._wanted: set[int] = set()  # pts of the samples still to decode
        self.frames_decoded = 0
        self.convert_cpu_s = 0.0
        self.tb: Fraction = self.stream.time_base or Fraction(1, 1_000_000)
        claimed = self._claimed_duration()
        if claimed is not None and claimed > limits.max_duration_s:
            raise SkyraError(
                ErrorCode.VIDEO_TOO_LONG,
                f"video lasts {claimed:.0f} s, the limit is {limits.max_duration_s:.0f} s",
            )

    def run(self) -> SampledVideo:
        timeline = self._scan()
        if timeline is None or not timeline.pts:
            raise SkyraError(ErrorCode.DECODE_FAILED, "no decodable video frames")
        first = timeline.pts[0]
        span_s = float((timeline.pts[-1] - first) * self.tb)
        spans = window_spans(span_s, self.limits)
        per_window = [
            self._window_targets(timeline, first, span, last=k == len(spans) - 1)
            for k, span in enumerate(spans)
        ]
        targets = sorted({pts for window in per_window for pts in window})
        picked = self._decode_targets(timeline, targets)
        if not picked:
            raise SkyraError(ErrorCode.DECODE_FAILED, "no frame could be decoded")
        frames = [img for _, img in picked]
        stamps = [round(float((pts - first) * self.tb), 4) for pts, _ in picked]
        windows: list[Window] = []
        if len(spans) > 1:
            # picked[i] answers targets[i] (a prefix of them when the stream ended early).
            by_target = {t: i for i, t in enumerate(targets[: len(picked)])}
            for (start, end), wanted in zip(spans, per_window, strict=True):
                idx = [by_target[t] for t in wanted if t in by_target]
                if idx:
                    windows.append(
                        Window(
                            start_s=round(start, 4),
                            end_s=round(end, 4),
                            frames=[frames[i] for i in idx],
                            timestamps_s=[stamps[i] for i in idx],
                        )
                    )
        cc = self.stream.codec_context
        disp_w, disp_h = self._upright_size(cc.width, cc.height, self._quarter_turns)
        duration = self._claimed_duration()
        if duration is None or duration <= 0:
            duration = float((timeline.pts[-1] - first) * self.tb)
        rate = self.stream.average_rate or self.stream.guessed_rate
        info = VideoInfo(
            duration_s=round(duration, 4),
            width=disp_w,
            height=disp_h,
            fps=round(float(rate), 4) if rate else None,
            codec=self.stream.codec_context.name,
            frames_sampled=len(frames),
            timestamps_s=stamps,
        )
        on_gpu = self.hardware and bool(self.stream.codec_context.is_hwaccel)
        if self.hardware and not on_gpu:
            raise _NoHardwareError("error", "FFmpeg did not attach the CUDA decoder")
        return SampledVideo(
            frames=frames,
            info=info,
            frames_decoded=self.frames_decoded,
            convert_cpu_s=self.convert_cpu_s,
            decoded_on="cuda" if on_gpu else "cpu",
            windows=windows,
        )

    def _window_targets(
        self, timeline: _Timeline, first: int, span: tuple[float, float], last: bool
    ) -> list[int]:
        """`num_frames` frame timestamps spread uniformly over the frames inside `span`
        (seconds from the first frame), as the whole video's are when it is one window.
        A window starts at its boundary and ends before the next one; the last one runs to
        the last frame."""
        ticks = float(self.tb)
        lo = bisect.bisect_left(timeline.pts, first + round(span[0] / ticks))
        hi = (
            len(timeline.pts)
            if last
            else bisect.bisect_left(timeline.pts, first + round(span[1] / ticks))
        )
        inside = timeline.pts[lo:hi] or timeline.pts[min(lo, len(timeline.pts) - 1) :][:1]
        n = len(inside)
        picks = sorted({int(i) for i in np.linspace(0, n - 1, self.limits.num_frames)})
        return [inside[i] for i in picks]

    # -- bounds -----------------------------------------------------------------------------

    def _check_pixels(self, width: int, height: int) -> None:
        if width * height > self.limits.max_pixels:
            raise SkyraError(
                ErrorCode.VIDEO_TOO_LARGE,
                f"frame is {width}x{height}, the limit is {self.limits.max_pixels} pixels",
            )

    @staticmethod
    def _check_nvdec(cc: Any) -> None:
        formats = NVDEC_CODECS.get(cc.name, frozenset())
        if formats is not None and not formats:
            raise _NoHardwareError("codec", f"NVDEC does not decode {cc.name}")
        pix_fmt = cc.format.name if cc.format is not None else None
        if formats is not None and pix_fmt not in formats:
            raise _NoHardwareError("format", f"NVDEC does not decode {cc.name} in {pix_fmt}")
        low, high = NVDEC_SIDES
        if not (low <= cc.width <= high and low <= cc.height <= high):
            raise _NoHardwareError(
                "size", f"{cc.width}x{cc.height} is outside NVDEC's {low} to {high} pixels"
            )

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise SkyraError(
                ErrorCode.DECODE_TIMEOUT,
                f"decoding took longer than {self.limits.timeout_s:.1f} s",
            )

    def _claimed_duration(self) -> float | None:
        if self.stream.duration:
            return float(self.stream.duration * self.tb)
        if self.container.duration:
            return float(self.container.duration) / 1_000_000
        return None

    # -- timeline ---------------------------------------------------------------------------

    def _scan(self) -> _Timeline | None:
        """Every frame's pts and the keyframes, from packets alone (nothing decoded)."""
        max_ticks = self.limits.max_duration_s / float(self.tb)
        pts: list[int] = []
        keys: list[int] = []
        for i, packet in enumerate(self.container.demux(self.stream)):
            if i % 256 == 0:
                self._check_deadline()
            if packet.size == 0:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                return None
            pts.append(stamp)
            if packet.is_keyframe:
                keys.append(stamp)
            if pts and stamp - pts[0] > max_ticks:
                raise SkyraError(
                    ErrorCode.VIDEO_TOO_LONG,
                    f"video runs past the limit of {self.limits.max_duration_s:.0f} s",
                )
        pts.sort()
        keys.sort()
        return _Timeline(pts=pts, keyframes=keys)

    # -- decoding ---------------------------------------------------------------------------

    _quarter_turns = 0  # of the last decoded frame, counter-clockwise

    def _frames(self) -> Iterator[Any]:
        cc = self.stream.codec_context
        for i, packet in enumerate(self.container.demux(self.stream)):
            if i % 16 == 0:
                self._check_deadline()
            if self._skip:
                # Read when the packet is sent: a reference frame is decoded whatever this
                # says, a non-reference one only when it is a sample (or cannot be placed).
                wanted = packet.pts is None or packet.pts in self._wanted
                cc.skip_frame = "DEFAULT" if wanted else "NONREF"
            for frame in packet.decode():
                self.frames_decoded += 1
                if frame.pts is not None:  # nothing to place on the timeline
                    yield frame

    def _seek(self, pts: int) -> Iterator[Any]:
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        return self._frames()

    def _decode_targets(
        self, timeline: _Timeline, targets: list[int]
    ) -> list[tuple[int, RGBFrame]]:
        self._wanted = set(targets)
        try:
            return self._decode_seeking(timeline, targets)
        except _SeekFailedError:
            # Some demuxers (MPEG-TS among them) cannot seek by stream timestamps; decoding
            # from the start is slower but always right, and the deadline still bounds it.
            self.container.seek(0)
            picked: list[tuple[int, RGBFrame]] = []
            self._collect(self._frames(), list(targets), picked, timeline=None)
            return picked

    def _decode_seeking(
        self, timeline: _Timeline, targets: list[int]
    ) -> list[tuple[int, RGBFrame]]:
        """Each target from the keyframe before it, seeking only when a keyframe lies between
        the last decoded frame and the target (otherwise decoding forward is cheaper)."""
        picked: list[tuple[int, RGBFrame]] = []
        pending = list(targets)
        while pending:
            frames = self._seek(self._seek_point(timeline, pending[0]))
            first = next(frames, None)
            if first is None or first.pts > pending[0]:
                raise _SeekFailedError
            if not self._collect(itertools.chain([first], frames), pending, picked, timeline):
                break  # end of stream: keep what we have
        return picked

    def _collect(
        self,
        frames: Iterator[Any],
        pending: list[int],
        picked: list[tuple[int, RGBFrame]],
        timeline: _Timeline | None,
    ) -> bool:
        """Decode forward, converting the first frame at or after each pending target.

        Returns True when it stopped early: everything picked, or (given `timeline`) the next
        target lies beyond a keyframe so seeking is cheaper. False at the end of the stream.
        """
        for frame in frames:
            while pending and frame.pts >= pending[0]:
                pending.pop(0)
                started = time.thread_time()
                picked.append((frame.pts, self._to_rgb(frame)))
                self.convert_cpu_s += time.thread_time() - started
            if not pending:
                return True
            if timeline is not None and self._keyframe_between(timeline, frame.pts, pending[0]):
                return True
        return False

    @staticmethod
    def _keyframe_between(timeline: _Timeline, position: int, target: int) -> bool:
        i = bisect.bisect_right(timeline.keyframes, position)
        return i < len(timeline.keyframes) and timeline.keyframes[i] <= target

    @staticmethod
    def _seek_point(timeline: _Timeline, target: int) -> int:
        i = bisect.bisect_right(timeline.keyframes, target) - 1
        return timeline.keyframes[i] if i >= 0 else timeline.pts[0]

    def _upright_size(self, width: int, height: int, quarter_turns: int) -> tuple[int, int]:
        """Displayed size: anamorphic pixels stretched by the sample aspect ratio, then the
        display matrix's rotation applied."""
        sar = self.stream.sample_aspect_ratio
        if sar and sar > 0 and sar != 1:
            width = max(1, round(width * float(sar)))
        return (height, width) if quarter_turns % 2 else (width, height)

    def _to_rgb(self, frame: Any) -> RGBFrame:
        self._check_pixels(frame.width, frame.height)
        quarter_turns = round(int(getattr(frame, "rotation", 0) or 0) / 90) % 4
        self._quarter_turns = quarter_turns
        upright_w, upright_h = self._upright_size(frame.width, frame.height, quarter_turns)
        out_w, out_h = resized_size(upright_w, upright_h, self.limits.short_side)
        scale_w, scale_h = (out_h, out_w) if quarter_turns % 2 else (out_w, out_h)
        img = frame.reformat(
            width=scale_w, height=scale_h, format="rgb24", interpolation="BICUBIC"
        ).to_ndarray()
        if quarter_turns:
            img = np.ascontiguousarray(np.rot90(img, k=quarter_turns))
        return np.asarray(img, dtype=np.uint8)
