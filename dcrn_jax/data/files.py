"""Video and image files -> the pixels evaluation would score (numpy and PyAV only).

What predict (dcrn_jax/predict/) reads. Each file becomes the rows evaluation scores:

  video (a clip model):  its eval views, `clips.eval_view` (num_test_clips evenly spaced clips of
                         num_frames frames frame_stride apart x num_test_crops crops of the frames
                         resized to resize_short), decoded as the video_folder source decodes
                         them (`video_files`), in one pass over the file;
  image (an image model): one view: resized (aspect kept) so that its shorter side is the
                         model's larger input side, then the centre crop of the model's (H, W).
                         An image already of that size (as a dataset's images are) is untouched.

as uint8 pixels, which predict scales on the device as evaluation does
(dcrn_jax/input_scaling.py, inside the jitted step). Frames and images are read as grey
(1 channel) or RGB (3), as the model takes. A file that cannot be used raises `Unreadable` saying why; predict skips it.
"""

import dataclasses
import os

import numpy as np

from dcrn_jax.media import clips, video_files
from dcrn_jax.errors import UserError

VIDEO_EXTENSIONS = video_files.EXTENSIONS + (".mov", ".m4v", ".mpg", ".mpeg", ".ogv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class Unreadable(ValueError):
  """A file that gives no model input; the message says why."""


@dataclasses.dataclass(frozen=True, eq=False)
class FileSpec:
  """How files become inputs of one model.

  Attributes:
    input_shape: one model input, (T, H, W, C) for clip models or (H, W, C) for image models.
    clip: how videos are cut (clip models), else None.
  """

  input_shape: tuple[int, ...]
  clip: clips.ClipSpec | None

  @property
  def views(self) -> int:
    """Model inputs per file (a video's eval views; 1 for an image)."""
    return self.clip.views if self.clip else 1

  @property
  def kind(self) -> str:
    return "video" if self.clip else "image"


def file_spec(data_config, input_shape) -> FileSpec:
  """The FileSpec of a model taking inputs of `input_shape`, trained with `data_config`.

  Videos are cut as data.* says (frame_stride, resize_short, num_test_clips, num_test_crops)
  into clips of the model's frame count and size. UserError for a model no file can feed.
  """
  input_shape = tuple(int(n) for n in input_shape)
  channels = input_shape[-1]
  if channels not in (1, 3) or len(input_shape) not in (3, 4):
    raise UserError(f"this model takes inputs of shape {input_shape}; video and image files "
                    "give (T, H, W, C) clips or (H, W, C) images with C = 1 (grey) or 3 (RGB). "
                    "Preprocess the inputs yourself and use Predictor.predict_arrays")
  if len(input_shape) == 3:
    return FileSpec(input_shape, None)
  frames, height, width = input_shape[:3]
  if height != width:
    raise UserError(f"this model takes clips of {height}x{width} frames; clips cut from videos "
                    "are square. Use Predictor.predict_arrays with your own crops")
  spec = clips.spec_from_config(data_config)
  # Stored-clip and synthetic runs may leave data.image_size at a default unlike the model's.
  short = data_config.resize_short if data_config.resize_short >= height else height
  spec = dataclasses.replace(spec, num_frames=frames, size=height, resize_short=short,
                             flip=False)
  return FileSpec(input_shape, spec)


def kind_of(path: str) -> str | None:
  """'video' or 'image' by the file's extension, None for another extension."""
  ext = os.path.splitext(path)[1].lower()
  if ext in VIDEO_EXTENSIONS:
    return "video"
  return "image" if ext in IMAGE_EXTENSIONS else None


def list_inputs(paths) -> list[str]:
  """The files to predict: each path given, and the video and image files under each folder
  (recursively, sorted). UserError for a path that does not exist, or nothing to read."""
  found = []
  for path in paths:
    if os.path.isdir(path):
      found += sorted(os.path.join(root, n) for root, _, names in os.walk(path)
                      for n in names if kind_of(n))
    elif os.path.exists(path):
      found.append(path)
    else:
      raise UserError(f"{path} does not exist; give video or image files, or folders of them")
  if not found:
    raise UserError(f"no video or image file in {', '.join(map(str, paths)) or 'no path'} "
                    f"(looked for {', '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)})")
  return list(dict.fromkeys(found))  # The same file named twice is read once.


def read_image(path: str, height: int, width: int, channels: int) -> np.ndarray:
  """uint8 (height, width, channels): an image file resized and centre-cropped (module doc)."""
  av = video_files.require_av()
  if os.path.getsize(path) == 0:
    raise Unreadable("empty file")
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise Unreadable("no image in it")
      frame = next(container.decode(video=0), None)
      if frame is None:
        raise Unreadable("no decodable image")
      rh, rw = clips.resized_hw(frame.height, frame.width, max(height, width))
      pixels = frame.to_ndarray(format=video_files.pixel_format(channels), width=rw, height=rh)
  except av.FFmpegError as e:
    raise Unreadable(f"not a readable image (FFmpeg: {e.strerror or e})") from None
  top, left = (rh - height) // 2, (rw - width) // 2
  return pixels.reshape(rh, rw, channels)[top:top + height, left:left + width]


def read_video(path: str, spec: FileSpec) -> tuple[np.ndarray, str]:
  """(uint8 (views, T, S, S, C) eval views, note): the note says when the video is shorter
  than a clip (its last frame then repeats, as in evaluation)."""
  try:
    count, height, width = video_files.probe(path)
  except (ValueError, OSError) as e:
    raise Unreadable(f"not a readable video ({e})") from None
  pixels, ok = video_files.eval_clips(path, count, height, width, spec.clip,
                                      spec.input_shape[-1])
  if not ok:
    raise Unreadable("no frame of a clip could be decoded")
  note = ""
  if count < spec.clip.span:
    note = (f"{count} frames, fewer than a clip's {spec.clip.span}: its last frame is repeated, "
            "as in evaluation")
  return pixels, note


def read(path: str, spec: FileSpec) -> tuple[np.ndarray, str]:
  """(uint8 (spec.views, *spec.input_shape) pixels, note) of one file: the rows evaluation
  scores, before scaling (`input_scaling.model_input`).

  Raises Unreadable for a file that is not a readable video or image, or is of the kind the
  model does not take (a video for an image model, an image for a clip model).
  """
  kind = kind_of(path) or spec.kind  # An unknown extension: try what the model takes.
  if kind != spec.kind:
    if spec.kind == "video":
      raise Unreadable(f"an image, but this model takes clips of {spec.input_shape[0]} frames "
                       "(give it videos)")
    raise Unreadable(f"a video, but this model takes single images of shape "
                     f"{spec.input_shape} (give it images)")
  if spec.kind == "video":
    pixels, note = read_video(path, spec)
  else:
    try:
      pixels, note = read_image(path, *spec.input_shape)[None], ""
    except OSError as e:
      raise Unreadable(f"cannot be read ({e.strerror or e})") from None
  return pixels, note


def write_image(path: str, pixels: np.ndarray) -> None:
  """Writes uint8 (H, W, C), C = 1 (grey) or 3 (RGB), as a PNG file (lossless)."""
  av = video_files.require_av()
  pixels = np.asarray(pixels, np.uint8)
  fmt = video_files.pixel_format(pixels.shape[-1])
  with av.open(path, "w", format="image2") as container:
    stream = container.add_stream("png")
    stream.pix_fmt, (stream.height, stream.width) = fmt, pixels.shape[:2]
    image = pixels[..., 0] if fmt == "gray" else pixels
    for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=fmt)):
      container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
