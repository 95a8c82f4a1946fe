"""Drawing neural (DINAR) avatars: posed body + camera → DINAR's neural renderer → frames.

The renderer sees what DINAR's rasteriser gives it: a uv render holding ``2·uv − 1`` on the
body and −10 on the background, the body mask, and the avatar's 21-channel texture.

How a DINAR avatar stores its 21-channel texture (``Avatar.textures``; the same tensors as any
avatar plus two neural entries, so RGB-only tools still work):

============  =====================  ===================================================
key           layout                 21-channel texture channels
============  =====================  ===================================================
``neural``    (16, T, T) float16     0–15, the generator's features (inpainted)
``rgb``       (T, T, 3) uint8        16–18, colour in [0, 1] (×255)
``neural_masks`` (2, T, T) float16   19–20 exactly as the texture had them (known mask and
                                     the one-texel ring; decoded values where inpainted)
``filled``    (T, T) uint8 {0,1}     B_fill: texels sampled from the photo + 3×3 ring
``known``     (T, T) uint8 {0,1}     B_smp: texels hit exactly by a photo pixel
============  =====================  ===================================================

``neural_masks`` is optional: without it channels 19–20 are rebuilt from ``filled`` and
``filled − known`` (DINAR's ``mask`` and ``inpaint_mask``).

UV layouts. Every avatar's textures (RGB-only ones too) use the avatar's UV layout:

* ``uv_layout == body.name``: the body's own layout;
* ``uv_layout == "dinar"``: DINAR's SMPL-X "front cut" layout (what the official networks
  expect). It comes from the installed ``dinar_uv_layout`` weights (``Avatar.weights`` then
  records their sha256, so another file is refused), **or**, when the avatar carries the two
  entries ``layout_uv`` (N, 2) float32 and ``layout_uv_faces`` (F, 3) int32 in its
  ``textures``, from those: ``avatar create --uv-layout PATH`` embeds the layout read from a
  user's DINAR ``smplx_data/`` folder (``uv.npy`` + ``uv_faces.npy``) or ``.npz`` (``uv``,
  ``uv_faces``), so ``avatar animate``/``render`` draw the avatar without that file (about
  0.3 MB). The embedded layout wins over the installed one.

:func:`resolve_uv_layout` turns the ``--uv-layout`` choice (``body``, ``dinar`` or a path) into
a :class:`UVLayout`; :func:`avatar_uv_layout` finds an existing avatar's layout.

Renderer weights: the avatar's own ``renderer`` state dict when it has one, else the installed
``dinar_renderer``. ``Avatar.weights`` records the sha256 of each shared weights file the avatar
was made with; rendering with a different file fails instead of drawing garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from avatarcli.avatar_file import rgb_for_file
from avatarcli.errors import AvatarFormatError, MissingWeightsError, UserError

if TYPE_CHECKING:  # pragma: no cover
    from avatarcli.avatar_file import Avatar
    from avatarcli.body import BodyModel
    from avatarcli.nets.dinar_renderer import DinarRenderer, DinarRenderOutput
    from avatarcli.render import Camera

#: Shared weights the neural path reads from the registry.
RENDERER_WEIGHTS = "dinar_renderer"
UV_LAYOUT_WEIGHTS = "dinar_uv_layout"
#: ``Avatar.uv_layout`` of textures in DINAR's own SMPL-X UV layout.
DINAR_UV_LAYOUT = "dinar"
#: ``Avatar.textures`` entries of a UV layout embedded in the avatar (see the module doc).
LAYOUT_UV_KEY = "layout_uv"
LAYOUT_FACES_KEY = "layout_uv_faces"
#: The values ``--uv-layout`` takes besides a path.
UV_LAYOUT_CHOICES = ("body", DINAR_UV_LAYOUT)
#: DINAR's video maker composites with this soft-mask threshold (exponential transparency).
VIDEO_SEGM_THRESHOLD = 0.5
NEURAL_CHANNELS = 16
TEXTURE_CHANNELS = 21


# ------------------------------------------------------------------------ the 21-channel texture
def texture21_from_avatar(avatar: Avatar, device: torch.device | str = "cpu") -> torch.Tensor:
    """The avatar's 21-channel DINAR texture as (1, 21, T, T) float32 (layout in the module doc)."""
    textures = avatar.textures
    for key in ("neural", "rgb"):
        if key not in textures:
            raise AvatarFormatError(
                f"the avatar has no {key!r} texture, so it cannot be drawn by the neural renderer; "
                "recreate it with avatar create --method dinar"
            )
    neural = textures["neural"].to(device=device, dtype=torch.float32)
    size = neural.shape[-1]
    if neural.dim() != 3 or neural.shape[0] != NEURAL_CHANNELS:
        raise AvatarFormatError(
            f"the avatar's neural texture has shape {tuple(neural.shape)}, expected (16, T, T)"
        )
    rgb = textures["rgb"].to(device=device, dtype=torch.float32).permute(2, 0, 1) / 255.0
    if "neural_masks" in textures:
        masks = textures["neural_masks"].to(device=device, dtype=torch.float32)
    elif "filled" in textures:
        filled = textures["filled"].to(device=device, dtype=torch.float32).clamp(0, 1)
        known = textures.get("known", textures["filled"]).to(device=device, dtype=torch.float32).clamp(0, 1)
        masks = torch.stack([filled, (filled - known).clamp_min(0)])
    else:
        raise AvatarFormatError("the avatar has neither 'neural_masks' nor 'filled'; the file is damaged")
    if rgb.shape[-2:] != (size, size) or masks.shape != (2, size, size):
        raise AvatarFormatError(
            f"the avatar's textures disagree in size (neural {size}², rgb {tuple(rgb.shape[-2:])}, "
            f"masks {tuple(masks.shape[-2:])}); the file is damaged"
        )
    return torch.cat([neural, rgb, masks])[None].contiguous()


def avatar_textures_from_texture21(
    texture21: torch.Tensor, known: torch.Tensor, filled: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Split one (21, T, T) or (1, 21, T, T) texture into the avatar entries read above (CPU)."""
    tex = texture21.detach().float().cpu().reshape(TEXTURE_CHANNELS, *texture21.shape[-2:])
    rgb = rgb_for_file(tex[16:19])

    def as_u8(mask: torch.Tensor) -> torch.Tensor:
        return (mask.detach().cpu().reshape(tex.shape[-2:]) > 0.5).to(torch.uint8)

    return {
        "neural": tex[:NEURAL_CHANNELS].to(torch.float16).contiguous(),
        "rgb": rgb,
        "neural_masks": tex[19:21].to(torch.float16).contiguous(),
        "known": as_u8(known),
        "filled": as_u8(filled),
    }


# ---------------------------------------------------------------------------------- UV layouts
@dataclass(frozen=True)
class UVLayout:
    """Per-corner texture coordinates of a body's faces: ``uv`` (N, 2) in [0, 1], v = 0 at the top
    row, and ``uv_faces`` (F, 3) into ``uv``, one row per body face (same order as ``body.faces``).
    """

    name: str
    uv: torch.Tensor
    uv_faces: torch.Tensor

    def to(self, device: torch.device | str) -> UVLayout:
        return UVLayout(self.name, self.uv.to(device), self.uv_faces.to(device))


def body_uv_layout(body: BodyModel) -> UVLayout:
    return UVLayout(body.name, body.uv, body.uv_faces)


def manifest_sha256(name: str, folder: Path | None = None) -> str | None:
    """The sha256 the weights manifest records for ``name`` (None when not installed)."""
    from avatarcli.weights_registry import read_manifest

    for entry in read_manifest(folder):
        if entry.name == name:
            return entry.sha256
    return None


def check_same_weights(avatar: Avatar, name: str, folder: Path | None = None) -> None:
    """Refuse installed weights other than those the avatar was made with (when it recorded them)."""
    recorded = avatar.weights.get(name)
    if not recorded:
        return
    installed = manifest_sha256(name, folder)
    if installed is not None and installed != recorded:
        raise AvatarFormatError(
            f"this avatar was made with other {name} weights (sha256 {recorded[:12]}…, installed "
            f"{installed[:12]}…); install the weights it was made with or recreate the avatar"
        )


def load_dinar_uv_layout(folder: Path | None = None, device: torch.device | str = "cpu") -> UVLayout:
    """DINAR's SMPL-X UV layout from the installed ``dinar_uv_layout`` weights."""
    from avatarcli.weights_registry import load_safetensors

    tensors = load_safetensors(UV_LAYOUT_WEIGHTS, device=device, folder=folder)
    return UVLayout(DINAR_UV_LAYOUT, tensors["uv"].float(), tensors["uv_faces"].long())


def _read_layout_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``uv`` and ``uv_faces`` from a DINAR ``smplx_data/`` folder or an ``.npz``; never unpickles."""

    def load(file: Path, key: str | None = None) -> np.ndarray:
        try:
            data = np.load(file, allow_pickle=False)
            if key is None:
                return np.asarray(data)
            if not hasattr(data, "files"):
                raise UserError(f"UV layout file {file} is not an .npz archive (uv, uv_faces)")
            with data:
                if key not in data.files:
                    raise UserError(f"UV layout file {file} has no {key!r} array (it has {data.files})")
                return np.asarray(data[key])
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise UserError(
                    f"UV layout file {file} holds pickled Python objects; refusing to load it "
                    "(save plain arrays with numpy.save)"
                ) from None
            raise UserError(f"UV layout file {file} is not a numpy array file ({exc})") from None
        except (OSError, EOFError) as exc:
            raise UserError(f"UV layout file {file} cannot be read ({exc})") from None

    if path.is_dir():
        files = [path / "uv.npy", path / "uv_faces.npy"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise UserError(
                f"UV layout folder {path} lacks {' and '.join(missing)}; give DINAR's smplx_data/ "
                "folder (uv.npy + uv_faces.npy) or an .npz with uv and uv_faces"
            )
        return load(files[0]), load(files[1])
    if not path.is_file():
        raise UserError(
            f"--uv-layout {path}: no such file or folder; use body, dinar, DINAR's smplx_data/ "
            "folder or an .npz with uv and uv_faces"
        )
    if path.suffix.lower() != ".npz":
        raise UserError(f"UV layout file {path} must be an .npz (uv, uv_faces) or a smplx_data/ folder")
    return load(path, "uv"), load(path, "uv_faces")


def load_uv_layout_file(path: str | Path) -> UVLayout:
    """A user's DINAR-style UV layout, checked: ``uv`` (N, 2) in [0, 1] (v = 0 at the top row, as
    DINAR's ``uv.npy``), ``uv_faces`` (F, 3) integers indexing ``uv``. Named ``"dinar"``.
    """
    path = Path(path)
    uv, uv_faces = _read_layout_arrays(path)
    if uv.ndim != 2 or uv.shape[1] != 2 or uv.shape[0] == 0 or not np.issubdtype(uv.dtype, np.floating):
        raise UserError(f"UV layout {path}: uv must be a float (N, 2) array, got {uv.dtype} {uv.shape}")
    if uv_faces.ndim != 2 or uv_faces.shape[1] != 3 or not np.issubdtype(uv_faces.dtype, np.integer):
        raise UserError(
            f"UV layout {path}: uv_faces must be an integer (F, 3) array, "
            f"got {uv_faces.dtype} {uv_faces.shape}"
        )
    if not np.isfinite(uv).all() or uv.min() < 0.0 or uv.max() > 1.0:
        low, high = float(np.nanmin(uv)), float(np.nanmax(uv))
        raise UserError(f"UV layout {path}: uv values must lie in [0, 1], found [{low:.4g}, {high:.4g}]")
    if uv_faces.size and (uv_faces.min() < 0 or uv_faces.max() >= uv.shape[0]):
        raise UserError(
            f"UV layout {path}: uv_faces index {int(uv_faces.min())}…{int(uv_faces.max())}, "
            f"but uv has {uv.shape[0]} rows"
        )
    return UVLayout(
        DINAR_UV_LAYOUT,
        torch.from_numpy(uv.astype(np.float32)),
        torch.from_numpy(uv_faces.astype(np.int64)),
    )


def check_layout_fits(layout: UVLayout, body: BodyModel, source: str) -> None:
    """One line when the layout was made for another mesh (DINAR's is SMPL-X's 20,908 faces)."""
    if layout.uv_faces.shape[0] != body.faces.shape[0]:
        raise UserError(
            f"UV layout {source} has {layout.uv_faces.shape[0]} faces but the {body.name!r} body has "
            f"{body.faces.shape[0]}; a DINAR layout fits only the SMPL-X mesh: use --body smplx"
        )


def check_uv_layout_choice(choice: str) -> None:
    """Fail fast (before perception or fitting) on a ``--uv-layout`` that cannot be used."""
    from avatarcli.weights_registry import require_weights

    if choice == "body":
        return
    if choice == DINAR_UV_LAYOUT:
        require_weights([UV_LAYOUT_WEIGHTS])
    else:
        load_uv_layout_file(choice)


def resolve_uv_layout(choice: str, body: BodyModel, folder: Path | None = None) -> UVLayout:
    """``--uv-layout``: ``body`` (the body's own), ``dinar`` (the installed DINAR layout) or the
    path of a DINAR ``smplx_data/`` folder / ``.npz``; checked against the body's faces."""
    if choice == "body":
        return body_uv_layout(body)
    if choice == DINAR_UV_LAYOUT:
        layout, source = load_dinar_uv_layout(folder, body.faces.device), "dinar (installed weights)"
    else:
        layout, source = load_uv_layout_file(choice).to(body.faces.device), str(choice)
    check_layout_fits(layout, body, source)
    return layout


def embedded_layout_textures(layout: UVLayout) -> dict[str, torch.Tensor]:
    """The avatar ``textures`` entries that carry ``layout`` inside the avatar file."""
    return {
        LAYOUT_UV_KEY: layout.uv.detach().float().cpu().contiguous(),
        LAYOUT_FACES_KEY: layout.uv_faces.detach().cpu().to(torch.int32).contiguous(),
    }


def _embedded_uv_layout(avatar: Avatar) -> UVLayout | None:
    uv, uv_faces = avatar.textures.get(LAYOUT_UV_KEY), avatar.textures.get(LAYOUT_FACES_KEY)
    if uv is None or uv_faces is None:
        return None
    return UVLayout(avatar.uv_layout, uv.float(), uv_faces.long())


def avatar_uv_layout(avatar: Avatar, body: BodyModel, folder: Path | None = None) -> UVLayout:
    """The UV layout the avatar's textures are in, checked against the body's faces."""
    if avatar.uv_layout == body.name:
        return body_uv_layout(body)
    if avatar.uv_layout != DINAR_UV_LAYOUT:
        raise AvatarFormatError(
            f"the avatar's textures use the {avatar.uv_layout!r} UV layout, which the {body.name!r} "
            "body cannot draw; recreate the avatar for this body"
        )
    layout = _embedded_uv_layout(avatar)
    if layout is not None:
        faces = layout.uv_faces
        if faces.numel() and not 0 <= int(faces.min()) <= int(faces.max()) < len(layout.uv):
            raise AvatarFormatError("the avatar's embedded UV layout indexes past its uv table; damaged file")
        layout = layout.to(body.faces.device)
        where = "its embedded"
    else:
        check_same_weights(avatar, UV_LAYOUT_WEIGHTS, folder)
        layout = load_dinar_uv_layout(folder, device=body.faces.device)
        where = "DINAR's SMPL-X"
    if layout.uv_faces.shape[0] != body.faces.shape[0]:
        raise AvatarFormatError(
            f"the avatar uses {where} UV layout ({layout.uv_faces.shape[0]} faces) but the "
            f"{body.name!r} body has {body.faces.shape[0]} faces; use --body smplx"
        )
    return layout


# ----------------------------------------------------------------------------- renderer weights
def neural_renderer_available(avatar: Avatar, folder: Path | None = None) -> bool:
    """Whether ``avatar`` can be drawn neurally here: it has a neural texture and renderer weights
    (its own, or installed ones; a DINAR-layout avatar also needs the installed UV layout).
    """
    from avatarcli.weights_registry import require_weights

    if not avatar.has_neural_texture:
        return False
    needed = [] if avatar.renderer is not None else [RENDERER_WEIGHTS]
    if avatar.uv_layout == DINAR_UV_LAYOUT and _embedded_uv_layout(avatar) is None:
        needed.append(UV_LAYOUT_WEIGHTS)
    try:
        require_weights(needed, folder)
    except MissingWeightsError:
        return False
    return True


def load_avatar_renderer(
    avatar: Avatar, device: torch.device | str = "cpu", folder: Path | None = None
) -> DinarRenderer:
    """The avatar's own renderer, or the installed ``dinar_renderer`` it was made with, in eval mode."""
    from avatarcli.nets import load_network
    from avatarcli.nets.dinar_renderer import DinarRenderer
    from avatarcli.weights_registry import require_weights

    if avatar.renderer is not None:
        try:
            net = DinarRenderer.from_dinar_state_dict(avatar.renderer, prefix="")
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            raise AvatarFormatError(f"the avatar's own renderer weights do not load: {first}") from None
        return net.to(device).eval()
    path = require_weights([RENDERER_WEIGHTS], folder)[RENDERER_WEIGHTS]
    check_same_weights(avatar, RENDERER_WEIGHTS, folder)
    return load_network(DinarRenderer, path, device)


# --------------------------------------------------------------------------------- the renderer
def _camera_slice(camera: Camera, start: int, stop: int) -> Camera:
    from avatarcli.render import Camera

    if camera.batch_size == 1:
        return camera
    return Camera(
        camera.K[start:stop], camera.R[start:stop], camera.t[start:stop], camera.width, camera.height
    )


def _background_image(background, batch: int, height: int, width: int, device) -> torch.Tensor:
    """A grey level, RGB triple, (3,)/(H,W,3)/(B,3,H,W) tensor or array → (B, 3, H, W) in [0, 1]."""
    bg = torch.as_tensor(np.asarray(background) if not isinstance(background, torch.Tensor) else background)
    bg = bg.to(device=device, dtype=torch.float32)
    if bg.dim() <= 1:
        bg = bg.reshape(-1)
        bg = (bg.repeat(3) if bg.numel() == 1 else bg).view(1, 3, 1, 1).expand(batch, 3, height, width)
    elif bg.dim() == 3:
        bg = bg.permute(2, 0, 1)[None] if bg.shape[-1] == 3 else bg[None]
    if bg.shape[-2:] != (height, width):
        raise ValueError(f"background is {tuple(bg.shape[-2:])}, the frames are {(height, width)}")
    return bg.expand(batch, 3, height, width)


class NeuralFrameRenderer:
    """A :class:`~avatarcli.pipelines.posing.FrameRenderer` drawing with DINAR's neural renderer.

    ``vertices`` (B, V, 3) + a camera of batch 1 or B → (B, H, W, 3) uint8. Frames are rendered
    ``max_batch`` at a time to bound memory; sizes not divisible by the U-Net's 2^n are padded.
    """

    def __init__(
        self,
        renderer: DinarRenderer,
        texture21: torch.Tensor,
        faces: torch.Tensor,
        layout: UVLayout,
        background=1.0,
        *,
        segm_threshold: float = VIDEO_SEGM_THRESHOLD,
        max_batch: int = 8,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        device = texture21.device
        self.renderer = renderer.to(device=device, dtype=dtype).eval()
        if channels_last:
            self.renderer = self.renderer.to(memory_format=torch.channels_last)
        self.renderer.requires_grad_(False)
        self.texture = texture21.reshape(1, TEXTURE_CHANNELS, *texture21.shape[-2:]).to(dtype)
        self.faces = faces.to(device)
        self.layout = layout.to(device)
        self.background = background
        self.segm_threshold = float(segm_threshold)
        self.max_batch = max(1, int(max_batch))
        self.dtype = dtype
        self.channels_last = channels_last

    @classmethod
    def for_avatar(
        cls,
        avatar: Avatar,
        body: BodyModel,
        device: torch.device | str,
        background=1.0,
        *,
        weights_folder: Path | None = None,
        segm_threshold: float = VIDEO_SEGM_THRESHOLD,
        max_batch: int = 8,
    ) -> NeuralFrameRenderer:
        """Everything the avatar needs, checked before any frame is drawn (weights, layout, texture)."""
        texture = texture21_from_avatar(avatar, device)
        renderer = load_avatar_renderer(avatar, device, weights_folder)
        if renderer.config.ntex_channels != TEXTURE_CHANNELS:
            raise AvatarFormatError(
                f"the renderer expects a {renderer.config.ntex_channels}-channel texture, the avatar has 21"
            )
        layout = avatar_uv_layout(avatar, body, weights_folder)
        return cls(
            renderer,
            texture,
            body.faces,
            layout,
            background,
            segm_threshold=segm_threshold,
            max_batch=max_batch,
        )

    def renderer_inputs(self, vertices: torch.Tensor, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        """DINAR's uv render (B, 2, H, W) (2·uv − 1, −10 off the body) and uv mask (B, 1, H, W)."""
        from avatarcli.render import dinar_uv_image, rasterize, render_uv

        fragments = rasterize(vertices, self.faces, camera, cull_backfaces=True)
        uv = render_uv(fragments, self.layout.uv, self.layout.uv_faces)
        return dinar_uv_image(uv, fragments.mask), fragments.mask.unsqueeze(1).float()

    def render(self, vertices: torch.Tensor, camera: Camera) -> DinarRenderOutput:
        """One batch through the network (no chunking): rgb in [-1, 1], composited alpha, features."""
        vertices = vertices.to(self.texture.device)
        if vertices.dim() == 2:
            vertices = vertices[None]
        batch = vertices.shape[0]
        uv, uv_mask = self.renderer_inputs(vertices, camera)
        height, width = uv.shape[-2:]
        background = _background_image(self.background, batch, height, width, uv.device)
        factor = 2**self.renderer.config.n_downsampling
        pad_h, pad_w = -height % factor, -width % factor
        if pad_h or pad_w:  # the U-Net halves the size n times: pad with background, crop after
            uv = F.pad(uv, (0, pad_w, 0, pad_h), value=-10.0)
            uv_mask = F.pad(uv_mask, (0, pad_w, 0, pad_h), value=0.0)
            background = F.pad(background, (0, pad_w, 0, pad_h), mode="replicate")
        inputs = [uv.to(self.dtype), uv_mask.to(self.dtype), background.to(self.dtype)]
        if self.channels_last:
            inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
        with torch.no_grad():
            out = self.renderer(
                self.texture.expand(batch, -1, -1, -1),
                inputs[0],
                inputs[1],
                inputs[2],
                segm_threshold=self.segm_threshold,
            )
        if pad_h or pad_w:
            out = type(out)(*(x[..., :height, :width] for x in out))
        return out

    def __call__(self, vertices: torch.Tensor, camera: Camera) -> np.ndarray:
        if vertices.dim() == 2:
            vertices = vertices[None]
        frames = []
        for start in range(0, vertices.shape[0], self.max_batch):
            stop = min(start + self.max_batch, vertices.shape[0])
            out = self.render(vertices[start:stop], _camera_slice(camera, start, stop))
            image = ((out.rgb.float() + 1) / 2).clamp(0, 1)
            frames.append((image * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(frames, axis=0)
