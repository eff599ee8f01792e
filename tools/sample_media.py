"""Sample media made from real photos that scikit-image ships: nothing is downloaded.

``scene`` places a photo of a person before a plain wall (or another photo),
``video`` moves it across the frame, so a detector sees the same person in
different places frame after frame; ``street`` has people of several sizes cross a brick wall
(and, as a long video, come and go); ``image`` writes one photo as it is. ``long_video`` and ``clip`` are synthetic
(a square a test detector finds): small and long, or camera-sized in any container. Used by the tests, the benchmarks
and the demo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

PEOPLE = ("astronaut",)  # Eileen Collins' portrait: a person and a face
NO_PEOPLE = ("coffee", "chelsea", "rocket")
# Who walks down ``street``: a photo, a height as a share of the frame's, where they enter and leave (share of the
# width), and when they are in view (share of the video's length). Half-body portraits: HOG, a full-body
# pedestrian model, finds none of them; a deep people detector does.
WALKERS = (
    ("astronaut", 0.7, (0.2, 0.75), (0.0, 1.0)),
    ("camera", 0.55, (0.85, 0.15), (0.1, 0.8)),
    ("grace_hopper", 0.45, (0.35, 0.6), (0.45, 1.0)),
)


# Where the person is in each photo of a person (pixels: x_min, y_min, x_max, y_max), annotated by eye as COCO
# would draw it: hair to the photo's lower edge, hands included, held objects (helmet, tripod) not.
PERSON_BOXES = {
    "astronaut": (18, 14, 365, 512),  # Eileen Collins (scikit-image)
    "camera": (0, 65, 310, 512),  # the cameraman (scikit-image)
    "grace_hopper": (12, 21, 512, 600),  # Grace Hopper (matplotlib's sample data), head and shoulders
}


def photo(name: str) -> np.ndarray:
    """A packaged sample photo as a BGR array: scikit-image's data, or matplotlib's Grace Hopper."""
    if name == "grace_hopper":
        import matplotlib

        found = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
        if found is None:
            raise FileNotFoundError("matplotlib's sample_data/grace_hopper.jpg")
        return found
    from skimage import data

    image = getattr(data, name)()
    if image.dtype == bool:  # a silhouette mask (the horse)
        image = np.where(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def person_patch(name: str, height: int, margin: float = 0.06) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A photo's person cropped to their box plus ``margin`` of its width, scaled to ``height`` pixels; their box in it."""
    picture = photo(name)
    x0, y0, x1, y1 = PERSON_BOXES[name]
    pad = round(margin * (x1 - x0))
    cx0, cy0 = max(0, x0 - pad), max(0, y0 - pad)
    cx1, cy1 = min(picture.shape[1], x1 + pad), min(picture.shape[0], y1 + pad)
    crop = picture[cy0:cy1, cx0:cx1]
    scale = height / crop.shape[0]
    patch = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    return patch, ((x0 - cx0) * scale, (y0 - cy0) * scale, (x1 - cx0) * scale, (y1 - cy0) * scale)


def image(path: Path, name: str = "astronaut") -> Path:
    """Write a sample photo; the suffix picks the format (.jpg, .png, .webp)."""
    if not cv2.imwrite(str(path), photo(name)):
        raise ValueError(f"OpenCV cannot write {path.suffix} files")
    return path


def scene(
    subject: str = "astronaut", size: tuple[int, int] = (640, 480), height: int = 256, left: float = 0.5, background: str = "wall"
) -> np.ndarray:
    """``subject`` scaled to ``height`` pixels, centred at ``left`` of the width, before a plain wall or a photo (BGR)."""
    width, frame_height = size
    if background == "wall":
        frame = np.full((frame_height, width, 3), 90, np.uint8)
    else:
        frame = cv2.resize(photo(background), (width, frame_height))
    person = photo(subject)
    person = cv2.resize(person, (round(person.shape[1] * height / person.shape[0]), height))
    x = min(max(0, round(left * width - person.shape[1] / 2)), width - person.shape[1])
    y = (frame_height - height) // 2
    frame[y : y + height, x : x + person.shape[1]] = person
    return frame


def scene_image(path: Path, subject: str = "astronaut", **options: object) -> Path:
    """Write ``scene`` to ``path``; the suffix picks the format."""
    if not cv2.imwrite(str(path), scene(subject, **options)):  # type: ignore[arg-type]
        raise ValueError(f"OpenCV cannot write {path.suffix} files")
    return path


def video(
    path: Path,
    frames: int = 90,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
    subject: str = "astronaut",
    background: str = "wall",
) -> Path:
    """``subject`` walking left to right across ``background``. ``.avi`` is Motion-JPEG, ``.mp4`` is MPEG-4 part 2."""
    width, height = size
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for index in range(frames):
            progress = index / max(1, frames - 1)
            writer.write(scene(subject, size, height=round(height * 0.53), left=0.2 + 0.6 * progress, background=background))
    finally:
        writer.release()
    return path


def street(
    path: Path, seconds: float = 5.0, fps: float = 30.0, size: tuple[int, int] = (640, 480), background: str = "brick", gaps: bool = False
) -> Path:
    """People of several sizes walking across ``background``, crossing each other (one partly hides another).

    ``gaps``: everyone leaves for 7 s out of every 14 (an empty street between), as in a long video to be split.
    ``.avi`` is Motion-JPEG, ``.mp4`` is MPEG-4 part 2.
    """
    width, height = size
    backdrop = cv2.resize(photo(background), size, interpolation=cv2.INTER_AREA)
    walkers = []
    for name, share, path_x, shown in WALKERS:
        picture = photo(name)
        tall = round(height * share)
        walkers.append(
            (cv2.resize(picture, (round(picture.shape[1] * tall / picture.shape[0]), tall), interpolation=cv2.INTER_AREA), path_x, shown)
        )
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    frames = round(seconds * fps)
    try:
        for index in range(frames):
            frame = backdrop.copy()
            if not gaps or (index // round(fps * 7)) % 2 == 0:
                progress = (index % round(fps * 14)) / max(1, round(fps * 7) - 1) if gaps else index / max(1, frames - 1)
                for patch, (start, end), (shown_from, shown_to) in walkers:
                    if not shown_from <= progress <= shown_to:
                        continue
                    along = (progress - shown_from) / max(1e-9, shown_to - shown_from)
                    x = round((start + (end - start) * along) * width - patch.shape[1] / 2)
                    x = min(max(0, x), width - patch.shape[1])
                    frame[height - patch.shape[0] :, x : x + patch.shape[1]] = patch
            writer.write(frame)
    finally:
        writer.release()
    return path


def long_video(
    path: Path,
    seconds: float = 180.0,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    red_between: tuple[float, float] | None = None,
) -> Path:
    """A cheap synthetic video of ``seconds``: a bright square moving over a dark field, visible in about half the frames.

    Small and Motion-JPEG (``.avi``), so minutes of it write in seconds; long enough to be split into segments.
    ``red_between`` (seconds) paints those frames plain red: the tests' detector reads them as corrupt frame data.
    """
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    side = max(4, height // 5)
    try:
        for index in range(round(seconds * fps)):
            frame = np.full((height, width, 3), 30, np.uint8)
            if (index // round(fps * 7)) % 2 == 0:  # shown for 7 s, hidden for 7 s
                x = (index * 3) % (width - side)
                y = (index * 2) % (height - side)
                frame[y : y + side, x : x + side] = 235
            cv2.putText(frame, str(index), (2, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (120, 120, 120), 1)
            if red_between and red_between[0] <= index / fps < red_between[1]:
                frame[:] = (0, 0, 255)
            writer.write(frame)
    finally:
        writer.release()
    return path


def clip(
    path: Path,
    seconds: float = 10.0,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    bit_rate: int = 1_000_000,
    keyframe_every: int = 50,
) -> Path:
    """An MPEG-4 part 2 video in the container ``path``'s suffix picks (.mp4, .mov, .mkv, .avi), through PyAV.

    The square of ``long_video`` (shown 7 s, hidden 7 s; ``tests.support.plugins:SquareDetector`` finds it) over a
    moving texture of noise, which the encoder cannot squeeze: the file is about ``bit_rate`` bits a second, as a
    camera's is, so byte counts (what a segment reads) mean what they would for real footage. A keyframe every
    ``keyframe_every`` frames. 1280x720 at 25 fps writes about 150 frames a second on one core.
    """
    import av

    width, height = size
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(20, 110, (height + 64, width + 256, 3), np.uint8), (3, 3), 0)
    side = max(4, height // 5)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bit_rate
        stream.codec_context.gop_size = keyframe_every
        for index in range(round(seconds * fps)):
            dx, dy = (index * 7) % 256, (index * 3) % 64
            frame = np.ascontiguousarray(texture[dy : dy + height, dx : dx + width])
            if (index // (fps * 7)) % 2 == 0:
                x, y = (index * 3) % (width - side), (index * 2) % (height - side)
                frame[y : y + side, x : x + side] = 235
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description="Write sample media made from scikit-image's photos.")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for written in (
        scene_image(args.folder / "person.jpg"),
        image(args.folder / "portrait.jpg"),
        image(args.folder / "coffee.png", "coffee"),
        street(args.folder / "street.mp4", seconds=5),
        street(args.folder / "long-walk.avi", seconds=180, fps=10, size=(320, 240), gaps=True),
    ):
        print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
