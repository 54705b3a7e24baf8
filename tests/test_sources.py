"""Frame sources on the real videos: counts and times, truncated and unreadable files, image folders,
chains, the latest-frame reader, and the missing camera."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from tracker.sources import (
    CameraSource,
    ChainSource,
    ImageFolderSource,
    LatestFrameSource,
    SourceError,
    VideoSource,
    camera_device_missing,
    jpeg_cut_short,
    open_inputs,
)


def truncate(src, dst, fraction: float):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[: int(len(data) * fraction)])
    return dst


def test_video_source_frames_and_timestamps(video_path):
    with VideoSource(video_path) as src:
        assert src.frame_count == 202 and src.fps == 25.0
        frames = list(src)
    assert [f.index for f in frames] == list(range(202))
    assert frames[0].image.shape == (239, 320, 3) and frames[0].image.dtype == np.uint8
    np.testing.assert_allclose([f.timestamp_ms for f in frames], np.arange(202) * 40.0)


def test_truncated_video_yields_what_it_can_then_fails(video_path, tmp_path):
    path = truncate(video_path, tmp_path / "half.avi", 0.5)
    src = VideoSource(path)
    got = []
    with pytest.raises(SourceError, match=r"ends after \d+ of 202 frames"):
        for f in src:
            got.append(f.index)
    assert 50 < len(got) < 202 and got == list(range(len(got)))


def test_unreadable_and_missing_videos_fail_on_open(tmp_path):
    bad = tmp_path / "notes.avi"
    bad.write_text("not a video")
    with pytest.raises(SourceError, match="cannot read video"):
        VideoSource(bad)
    with pytest.raises(SourceError, match="video not found"):
        VideoSource(tmp_path / "missing.mp4")


def test_image_folder_source(video_path, tmp_path):
    with VideoSource(video_path) as src:
        for f in src:
            if f.index < 5:
                cv2.imwrite(str(tmp_path / f"img_{f.index:03d}.png"), f.image)
    (tmp_path / "readme.txt").write_text("ignored")
    src = open_inputs([str(tmp_path)], folder_fps=10.0)
    assert isinstance(src, ImageFolderSource) and src.frame_count == 5
    frames = list(src)
    assert [f.timestamp_ms for f in frames] == [0.0, 100.0, 200.0, 300.0, 400.0]
    assert frames[0].image.shape == (239, 320, 3)
    (tmp_path / "img_002.png").write_bytes(b"broken")
    with pytest.raises(SourceError, match="img_002.png"):
        list(ImageFolderSource(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(empty)


def test_jpeg_cut_short_is_left_out_with_one_warning(video_path, tmp_path):
    frames_seen = []
    with VideoSource(video_path) as src:
        for f in src:
            if f.index < 4:
                cv2.imwrite(str(tmp_path / f"img_{f.index:03d}.jpg"), f.image)
                frames_seen.append(f.image)
    whole = (tmp_path / "img_001.jpg").read_bytes()
    assert not jpeg_cut_short(whole) and jpeg_cut_short(whole[: len(whole) // 2]) and jpeg_cut_short(whole[:-2])
    assert not jpeg_cut_short(whole + b"\xff\xda\x00\x08 appended clip")  # data after the end marker
    ok, progressive = cv2.imencode(".jpg", frames_seen[1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    progressive = progressive.tobytes()  # several scans with tables between them
    assert ok and not jpeg_cut_short(progressive) and jpeg_cut_short(progressive[: len(progressive) * 2 // 3])
    assert not jpeg_cut_short(b"\x89PNG\r\n") and not jpeg_cut_short(b"")
    (tmp_path / "img_001.jpg").write_bytes(whole[: len(whole) * 9 // 10])
    said: list[str] = []
    frames = list(ImageFolderSource(tmp_path, 10.0, warn=said.append))
    assert [f.index for f in frames] == [0, 2, 3] and [f.timestamp_ms for f in frames] == [0.0, 200.0, 300.0]
    assert len(said) == 1 and "img_001.jpg" in said[0] and "cut short" in said[0]


def test_chain_continues_numbers_and_time(all_video_paths):
    a, b = all_video_paths[:2]
    src = open_inputs([str(a), str(b)])
    assert isinstance(src, ChainSource)
    frames = [(f.index, f.timestamp_ms, f.image.shape) for f in src]
    n_a = VideoSource(a).frame_count
    assert len(frames) == src.frame_count == n_a + VideoSource(b).frame_count
    assert [i for i, _, _ in frames] == list(range(len(frames)))
    times = np.array([t for _, t, _ in frames])
    assert np.all(np.diff(times) > 0) and times[n_a] == pytest.approx(n_a * 40.0)


def test_latest_frame_reader_paced_like_a_camera(all_video_paths):
    path = min(all_video_paths, key=lambda p: VideoSource(p).frame_count)  # the shortest clip
    total = VideoSource(path).frame_count
    latest = LatestFrameSource(VideoSource(path), pace=True)
    seen = []
    start = time.monotonic()
    for f in latest:
        seen.append(f.index)
        time.sleep(0.1 if f.index % 2 else 0.0)  # a consumer slower than the video half the time
    wall = time.monotonic() - start
    latest.close()
    assert wall >= (total - 1) / 25.0 * 0.9  # it really ran at the video's rate
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # newest first, never repeated
    assert latest.dropped > 0 and len(seen) + latest.dropped == total  # every frame seen or counted dropped


def test_latest_frame_reader_passes_on_a_mid_stream_failure(video_path, tmp_path):
    path = truncate(video_path, tmp_path / "cut.avi", 0.5)
    latest = LatestFrameSource(VideoSource(path))
    with pytest.raises(SourceError, match="truncated"):
        for _ in latest:
            pass
    latest.close()


@pytest.mark.skipif(not camera_device_missing(7), reason="this machine has a camera 7")
def test_missing_camera_is_one_clear_error_and_quick():
    with pytest.raises(SourceError) as err:
        CameraSource(7)
    assert str(err.value) == "no camera found at index 7; try `fkd-track video FILE`"
