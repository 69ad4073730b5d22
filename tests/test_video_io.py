"""Video files: round trips through mp4 / webp / gif / png, never overwriting, clear errors."""

import numpy as np
import pytest
import torch

from sora_core.media.video_io import VideoIOError, frames_to_tensor, read_video, tensor_to_frames, unique_path, write_image, write_video


def moving_square(t=9, h=32, w=48, colour=(230, 40, 40)):
    """A square moving right over a vertical gradient: uint8 (T, H, W, 3)."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 2] = np.linspace(40, 200, h, dtype=np.uint8)[None, :, None]
    for i in range(t):
        x = 2 + 3 * i
        frames[i, 10:20, x:x + 10] = colour
    return frames


def test_tensor_round_trip():
    frames = moving_square()
    video = frames_to_tensor(frames)
    assert video.shape == (3, 9, 32, 48) and video.min() >= -1 and video.max() <= 1
    assert np.array_equal(tensor_to_frames(video), frames)


@pytest.mark.parametrize("ext,tol", [("mp4", 6.0), ("webp", 8.0), ("gif", 8.0)])
def test_round_trip_frame_count_size_fps(tmp_path, ext, tol):
    frames = moving_square()
    path = write_video(tmp_path / f"clip.{ext}", frames, fps=12)
    assert path == tmp_path / f"clip.{ext}"
    back, fps = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps == pytest.approx(12, rel=1e-3)
    assert np.abs(back.astype(int) - frames).mean() < tol
    # the square is still where it was in every frame (order kept)
    def centre_x(v):
        return [np.nonzero(f[15, :, 0] > 128)[0].mean() for f in v]
    assert np.allclose(centre_x(back), centre_x(frames), atol=1.0)


def test_mp4_is_browser_playable_h264(tmp_path):
    import av
    path = write_video(tmp_path / "clip.mp4", moving_square(t=5), fps=8)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart puts the index before the media data"


def test_single_frame_and_odd_size(tmp_path):
    frames = moving_square(t=1, h=31, w=45)
    back, _ = read_video(write_video(tmp_path / "one.mp4", frames, fps=8))
    assert back.shape == (1, 32, 46, 3), "odd sizes are edge-padded by one row / column"
    assert np.abs(back[:, :31, :45].astype(int) - frames).mean() < 6
    back, _ = read_video(write_video(tmp_path / "one.gif", frames, fps=8))
    assert back.shape == frames.shape


def test_never_overwrites(tmp_path):
    a, b = moving_square(colour=(255, 0, 0)), moving_square(colour=(0, 255, 0))
    first = write_video(tmp_path / "v.mp4", a)
    before = first.read_bytes()
    second = write_video(tmp_path / "v.mp4", b)
    third = write_video(tmp_path / "v.mp4", b)
    assert (second.name, third.name) == ("v_00001.mp4", "v_00002.mp4")
    assert first.read_bytes() == before
    assert read_video(second)[0][0, 15, 8, 1] > 200
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file left"
    assert write_video(tmp_path / "v.mp4", b, overwrite=True) == first


def test_unique_path_files_and_folders(tmp_path):
    assert unique_path(tmp_path / "x.png") == tmp_path / "x.png"
    (tmp_path / "x.png").touch()
    (tmp_path / "x_00001.png").touch()
    assert unique_path(tmp_path / "x.png") == tmp_path / "x_00002.png"
    (tmp_path / "out").mkdir()
    assert unique_path(tmp_path / "out") == tmp_path / "out_00001"


def test_image_and_folder_reading(tmp_path):
    frames = moving_square(t=3)
    single = write_image(tmp_path / "f.png", frames[0])
    back, _ = read_video(single)
    assert back.shape == (1, 32, 48, 3) and np.array_equal(back[0], frames[0])
    seq = tmp_path / "seq"
    for i, name in enumerate(["f2.png", "f10.png", "f1.png"]):  # natural order: f1, f2, f10
        write_image(seq / name, frames[[1, 2, 0][i]])
    back, fps = read_video(seq)
    assert np.array_equal(back, frames) and fps > 0


def test_clear_errors(tmp_path):
    frames = moving_square(t=2)
    with pytest.raises(VideoIOError, match="unknown video extension '.avi'.*mp4"):
        write_video(tmp_path / "v.avi", frames)
    with pytest.raises(VideoIOError, match="uint8"):
        write_video(tmp_path / "v.mp4", frames.astype(np.float32))
    with pytest.raises(VideoIOError, match="shape"):
        write_video(tmp_path / "v.mp4", frames[0])
    with pytest.raises(VideoIOError, match="fps"):
        write_video(tmp_path / "v.mp4", frames, fps=0)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        write_video(blocker / "v.mp4", frames)
    with pytest.raises(FileNotFoundError, match="no such video"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoIOError, match="unknown extension '.txt'"):
        read_video(blocker.rename(tmp_path / "notes.txt"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(VideoIOError, match="cannot decode"):
        read_video(tmp_path / "bad.mp4")
    assert not (tmp_path / "v.mp4").exists(), "a failed write leaves no file"


def test_accepts_uint8_tensor(tmp_path):
    frames = torch.from_numpy(moving_square(t=3))
    back, _ = read_video(write_video(tmp_path / "t.webp", frames, lossless=True))
    assert np.array_equal(back, frames.numpy())


def test_reads_webm(tmp_path):
    """Containers other than the ones written (here VP9 in WebM, written with PyAV) are read too."""
    import av
    frames = moving_square(t=6)
    path = tmp_path / "clip.webm"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libvpx-vp9", rate=8)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == pytest.approx(8)
    assert np.abs(back.astype(int) - frames).mean() < 10
    assert read_video(path, max_frames=2)[0].shape[0] == 2


@pytest.mark.parametrize("ext,fps", [(".gif", 60), (".gif", 0.001), (".mp4", 0.0001), (".webp", 2000),
                                     (".mp4", float("nan")), (".webp", float("inf"))])
def test_rates_the_format_cannot_store_are_refused(tmp_path, ext, fps):
    from sora_core.media.video_io import FPS_LIMITS, VideoIOError, check_fps
    lo, hi = FPS_LIMITS[ext]
    with pytest.raises(VideoIOError, match=f"fps must be a number in \\[{lo:g}, {hi:g}\\] for a \\{ext} file"):
        write_video(tmp_path / f"x{ext}", moving_square(t=3), fps)
    assert list(tmp_path.iterdir()) == []
    assert check_fps(lo, ext) > 0 and check_fps(hi, ext) == hi


@pytest.mark.parametrize("fps", [0.25, 0.01])
def test_slow_gif_reads_back_at_its_rate(tmp_path, fps):
    path = write_video(tmp_path / "slow.gif", moving_square(t=3), fps)
    assert read_video(path)[1] == pytest.approx(fps)
