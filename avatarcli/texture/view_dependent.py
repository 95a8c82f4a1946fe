"""View-dependent colour for avatars made from many frames (image-based rendering on the body).

Why: one texture merged from a whole turn-around averages frames that disagree — folds and
shading that change as the person turns, and the pixel or two by which every frame's body fit
misses the person — so it reproduces even its own frames blurred. Keeping the frames themselves
and, for a new view, drawing each body pixel from the photos taken from the nearest directions
*relative to the torso* brings back what the person looked like from there (Debevec et al. 1996;
the weights are Buehler et al.'s unstructured-lumigraph blend, so a frame fades out before it is
swapped for another and a turning avatar does not pop).

Each pixel of the new view is a point on the body (a face and barycentrics); the same point on a
kept frame's posed mesh projects into that frame's photo, where it is read if the frame saw it
(its depth there agrees) and it lies inside the person, not on the mask's edge. Reading the
photos, not per-frame textures, keeps their full resolution: a 256² texture per frame could not
even redraw its own frame better than 23.3 dB. The photos are blurred a little (the person
alone, σ ≈ 0.4 % of their height, up to twice that for views far apart) because the frames'
fits disagree by a pixel or two, and a sharp wrong detail costs more than a soft right one;
before the blend, the frames' colours are moved onto one another by optical flow in the new view
(floating textures, :mod:`avatarcli.texture.floating`). Pixels no kept frame saw keep the merged
texture.
iPER turn GIF (27 even frames → 25 odd ones, 512 px): held-out PSNR inside the person 19.68
(merged texture) → 21.57 (per-frame textures) → 22.35 (photos) → 22.57 dB (floating), SSIM 0.594
→ 0.658 → 0.677 → 0.705.

The direction of a camera relative to the body is the camera centre seen from the torso: the
rotation that best aligns the rest-pose torso with the posed one (Kabsch) turns it back into
the rest pose's frame. It needs only the posed vertices, so any renderer that gets vertices and
a camera can ask for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: avatars from at least this many views keep their photos unless told otherwise (RGB merge
#: and video avatars alike). iPER turn, 27 frames → 25 held-out ones: RGB 19.68 → 22.57 dB, SSIM
#: 0.594 → 0.705. Sparse views (2 / 3 / 4 / 7 of iPER's even frames, scored on the others): the
#: kept photos beat the merged texture at every count, +0.24 / +0.42 / +0.71 / +1.01 dB (octopus,
#: 7 views 45° apart → the 8th, only reported: +0.27 dB); see docs/ARCHITECTURE.md
DEFAULT_MIN_VIEWS = 2
#: at most this many views are kept (evenly spread over the views), bounding the file
MAX_VIEWS = 36
#: frames blended for one view; the next-nearest frame sets where their weights reach zero.
#: This, the cosine power and the blur were chosen by leave-one-out on training frames alone
#: (iPER even frames, each drawn from the others); see docs/ARCHITECTURE.md for the sweep
NEIGHBOURS = 4
#: a pixel a frame saw at a grazing angle counts less: weight ∝ view cosine ** this
COSINE_POWER = 1.0
#: σ of the Gaussian blur of the kept photos (the person alone), as a share of the person's height
#: in them: 1.75 px for iPER's 472-px person. LOO PSNR / SSIM 20.44 / 0.599 (per-frame textures)
#: → unblurred photos 20.52 / 0.588 → σ 1 / 1.5 / 1.75 / 2 / 2.5 px: 20.83 / 20.94 / 20.96 / 20.98 /
#: 20.97 dB, SSIM 0.607 / 0.611 / 0.612 / 0.611 / 0.609
BLUR_SHARE = 1.75 / 472
#: the blur for kept frames whose poses were refined photometrically (``avatar create --video``:
#: each frame against its neighbours in time, then in rounds against the avatar's drawing). Their
#: fits agree to about a pixel, so the blur that hid a one-shot fit's error now only softens
#: detail. Chosen on a clean split of iPER's training frames (train on 14 even ones, score the 13
#: between, test poses against the drawing; whole frame on black, mean of seeds 0 and 1): σ 0 /
#: 0.5 / 0.75 / 1 / 1.75 px → 25.96 / 25.97 / 26.04 / 26.06 / 25.86 dB, SSIM 0.9265 / 0.9267 /
#: 0.9270 / 0.9263 / 0.9220 (1.25 px, seed 0: 26.16 / 0.9260). Held out, the full evaluation's
#: three seeds went from 26.20–26.48 / 0.9287–0.9304 to 26.38–26.62 / 0.9375–0.9388
#: (docs/ARCHITECTURE.md, "Sharper kept photos for refined frames")
REFINED_BLUR_SHARE = 0.75 / 472
#: degrees: kept views this far apart (the median angle from each to its nearest other) get
#: :data:`BLUR_SHARE`; farther apart the blur grows in proportion, to at most
#: :data:`MAX_BLUR_GROWTH` times — the farther the views, the more their fits disagree on a new
#: view between them. Sparse views of iPER's even frames, scored on the others (σ in px for its
#: 472-px person): 4 views 90° apart, σ 1.75 / 2.5 / 3.5 / 5 → 18.92 / 19.06 / 19.14 / 19.13 dB;
#: 7 views 51° apart → 19.82 / 19.93 / 19.97 / 19.87; 14 views 26° apart, σ 1.75 / 2.5 → 20.82 /
#: 20.84 dB but SSIM 0.625 / 0.617 (see docs/ARCHITECTURE.md)
BLUR_SPACING_DEG = 26.0
MAX_BLUR_GROWTH = 2.0
#: frames' colours are aligned to one another before blending (floating textures,
#: :mod:`avatarcli.texture.floating`): iPER LOO 20.96 → 21.09 dB, SSIM 0.612 → 0.633
FLOATING = True
#: pixels of margin around the body when measuring flow between the frames' colours
FLOAT_MARGIN = 8
#: photo pixels this close to the person mask's edge mix person and background: not read
EDGE_PX = 1
#: metres: a kept frame saw a body point when its own depth there is this close to the point's
DEPTH_TOLERANCE = 0.05
#: the kept photos are cropped to the person and at most this many pixels on the longer side
MAX_PHOTO_SIDE = 1024
#: pixels of margin around the person (body render ∪ mask) when cropping a kept photo
CROP_MARGIN = 4
#: body part of the torso in :data:`avatarcli.body.parts.PART_NAMES`
TORSO_PART = 1
#: radians: keeps the inverse-angle weights finite at a stored direction
_ANGLE_EPS = 1e-3


@dataclass
class ViewPhotos:
    """The kept frames: each photo cropped to the person, with its mask, camera and posed body.

    ``photos`` (N, 3, H, W) in [0, 1] and ``masks`` (N, 1, H, W) in [0, 1], every crop at the
    top-left of a common size (zeros beyond it); ``K`` (N, 3, 3), ``R`` (N, 3, 3), ``t`` (N, 3) the
    cameras of the crops; ``vertices`` (N, V, 3) the fitted body of each frame.
    """

    photos: torch.Tensor
    masks: torch.Tensor
    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    vertices: torch.Tensor
    #: σ of their blur as a share of the person's height; None: :data:`BLUR_SHARE`
    blur_share: float | None = None

    def __post_init__(self) -> None:
        if self.blur_share is not None and not 0.0 <= self.blur_share <= MAX_BLUR_SHARE:
            raise ValueError(f"blur share must lie in [0, {MAX_BLUR_SHARE}], not {self.blur_share}")
        n = self.photos.shape[0]
        size = tuple(self.photos.shape[-2:])
        ok = (
            n >= 1
            and self.photos.dim() == 4
            and self.photos.shape[1] == 3
            and tuple(self.masks.shape) == (n, 1, *size)
            and tuple(self.K.shape) == (n, 3, 3)
            and tuple(self.R.shape) == (n, 3, 3)
            and tuple(self.t.shape) == (n, 3)
            and self.vertices.dim() == 3
            and self.vertices.shape[0] == n
            and self.vertices.shape[2] == 3
        )
        if not ok:
            raise ValueError(
                f"view photos {tuple(self.photos.shape)}, masks {tuple(self.masks.shape)}, cameras "
                f"{tuple(self.K.shape)}/{tuple(self.R.shape)}/{tuple(self.t.shape)} and bodies "
                f"{tuple(self.vertices.shape)} do not describe the same frames"
            )

    def __len__(self) -> int:
        return int(self.photos.shape[0])

    def cameras(self):
        """All crops' cameras as one :class:`avatarcli.render.Camera` batch."""
        from avatarcli.render import Camera

        height, width = self.photos.shape[-2:]
        return Camera(self.K, self.R, self.t, int(width), int(height))

    def camera(self, index: int):
        from avatarcli.render import Camera

        height, width = self.photos.shape[-2:]
        return Camera(self.K[index], self.R[index], self.t[index], int(width), int(height))

    def to(self, device: torch.device | str) -> ViewPhotos:
        return ViewPhotos(
            *(x.to(device) for x in (self.photos, self.masks, self.K, self.R, self.t, self.vertices)),
            blur_share=self.blur_share,
        )


def kept_views(count: int, limit: int = MAX_VIEWS) -> list[int]:
    """Indices of the views to keep: all of them, or ``limit`` spread evenly over ``count``."""
    if count <= limit:
        return list(range(count))
    return sorted({round(k * (count - 1) / (limit - 1)) for k in range(limit)})


def torso_vertex_ids(body) -> torch.Tensor:
    """Vertices of the torso's faces: the part whose orientation says which way the body faces."""
    faces = body.faces[body.part_ids.to(body.faces.device) == TORSO_PART]
    return torch.unique(faces.reshape(-1))


def torso_rotation(posed: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotation R minimising Σ‖R (rest − mean) − (posed − mean)‖² (Kabsch).

    ``posed`` (B, K, 3) and ``rest`` (K, 3) or (B, K, 3) are the same torso vertices.
    """
    rest = rest.expand_as(posed)
    a = rest - rest.mean(1, keepdim=True)
    b = posed - posed.mean(1, keepdim=True)
    u, _, vh = torch.linalg.svd(b.transpose(1, 2) @ a)
    det = torch.det(u @ vh)
    fix = torch.ones_like(posed[:, 0])
    fix[:, 2] = det.sign()
    return u @ torch.diag_embed(fix) @ vh


def camera_directions(
    vertices: torch.Tensor, camera, rest: torch.Tensor, torso: torch.Tensor
) -> torch.Tensor:
    """(B, 3) unit direction from the torso to the camera centre, in the rest pose's frame.

    ``vertices`` (B, V, 3) posed meshes, ``camera`` an :class:`avatarcli.render.Camera` (batch 1
    or B), ``rest`` (V, 3) the rest-pose vertices of the same body, ``torso`` its torso vertex ids.
    """
    posed = vertices[:, torso].float()
    ref = rest[torso].to(posed)
    rotation = torso_rotation(posed, ref)
    R, t = camera.R.to(posed), camera.t.to(posed)
    centre = -(R.transpose(1, 2) @ t.unsqueeze(-1)).squeeze(-1)  # x_cam = R x + t
    offset = centre - posed.mean(1)
    local = (rotation.transpose(1, 2) @ offset.unsqueeze(-1)).squeeze(-1)
    return torch.nn.functional.normalize(local, dim=-1)


def view_spacing_deg(directions: torch.Tensor) -> float:
    """The kept views' spacing: the median over views of the angle (degrees) to the nearest other
    view; ``directions`` (N, 3) unit camera directions. 0 for a single view."""
    if directions.shape[0] < 2:
        return 0.0
    cosines = (directions @ directions.T).clamp(-1.0, 1.0)
    cosines.fill_diagonal_(-1.0)
    nearest = torch.rad2deg(torch.arccos(cosines.max(dim=1).values))
    return float(nearest.median())


def blur_growth(spacing_deg: float) -> float:
    """How many times :data:`BLUR_SHARE` the kept photos are blurred for views ``spacing_deg``
    apart (:func:`view_spacing_deg`): 1 up to :data:`BLUR_SPACING_DEG`, then in proportion, at
    most :data:`MAX_BLUR_GROWTH`."""
    return min(MAX_BLUR_GROWTH, max(1.0, spacing_deg / BLUR_SPACING_DEG))


def blend_weights(
    directions: torch.Tensor, stored: torch.Tensor, neighbours: int = NEIGHBOURS
) -> torch.Tensor:
    """(B, N) weights of the stored frames for each wanted direction (rows sum to 1).

    Unstructured-lumigraph blending: of the ``neighbours`` frames nearest in angle, frame i gets
    ``(1 − angle_i / cutoff) / angle_i``, ``cutoff`` being the angle of the next-nearest frame;
    every other frame 0. So a stored direction gives (almost) only its own frame, a direction
    halfway between two frames gives both the same, and a frame's weight reaches 0 exactly when
    another overtakes it. With no more frames than ``neighbours``, all share by inverse angle.
    """
    angle = torch.arccos((directions @ stored.T).clamp(-1.0, 1.0))  # (B, N)
    if stored.shape[0] <= neighbours:
        weights = 1.0 / (angle + _ANGLE_EPS)
    else:
        ordered, order = angle.sort(dim=1)
        cutoff = ordered[:, neighbours : neighbours + 1].clamp_min(_ANGLE_EPS)
        near = ordered[:, :neighbours]
        fade = (1.0 - near / cutoff).clamp_min(0.0) / (near + _ANGLE_EPS)
        tie = fade.sum(1, keepdim=True) <= 0  # the nearest all as far as the cutoff: share evenly
        fade = torch.where(tie, torch.ones_like(fade), fade)
        weights = torch.zeros_like(angle).scatter(1, order[:, :neighbours], fade)
    return weights / weights.sum(1, keepdim=True)


def build_view_photos(body, views: Sequence, blur_share: float | None = None) -> ViewPhotos:
    """Keep ``views`` (:class:`~avatarcli.texture.build.TextureView`) as :class:`ViewPhotos`:
    each photo cropped to its person (body render ∪ mask, plus a margin) and shrunk to at most
    :data:`MAX_PHOTO_SIDE` pixels on the longer side; ``blur_share`` as :class:`ViewPhotos`'."""
    from avatarcli.render import rasterize

    crops = []
    for view in views:
        vertices = view.vertices.reshape(1, -1, 3)
        camera = view.camera
        with torch.no_grad():
            covered = rasterize(vertices, body.faces, camera, cull_backfaces=True).mask[0]
        mask = view.mask.reshape(camera.height, camera.width).float()
        person = covered | (mask > 0.5)
        if not bool(person.any()):
            person = torch.ones_like(person)
        rows = torch.nonzero(person.any(1)).flatten()
        cols = torch.nonzero(person.any(0)).flatten()
        top, left = max(0, int(rows[0]) - CROP_MARGIN), max(0, int(cols[0]) - CROP_MARGIN)
        bottom = min(camera.height, int(rows[-1]) + 1 + CROP_MARGIN)
        right = min(camera.width, int(cols[-1]) + 1 + CROP_MARGIN)
        photo = view.image.reshape(1, 3, camera.height, camera.width)[..., top:bottom, left:right].float()
        mask = mask[None, None, top:bottom, left:right]
        K = camera.crop(left, top, right - left, bottom - top).K[0].clone()
        height, width = bottom - top, right - left
        scale = min(1.0, MAX_PHOTO_SIDE / max(height, width))
        if scale < 1.0:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            photo = F.interpolate(photo, size=size, mode="area")
            mask = F.interpolate(mask, size=size, mode="area")
            K[0] *= size[1] / width  # pixel centres at +0.5 keep exact under this scaling
            K[1] *= size[0] / height
        crops.append((photo[0].clamp(0, 1), mask[0], K, camera.R[0], camera.t[0], vertices[0]))
    height = max(c[0].shape[1] for c in crops)
    width = max(c[0].shape[2] for c in crops)

    def padded(image: torch.Tensor) -> torch.Tensor:
        return F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1]))

    return ViewPhotos(
        torch.stack([padded(c[0]) for c in crops]).cpu(),
        torch.stack([padded(c[1]) for c in crops]).cpu(),
        *(torch.stack([c[k].float() for c in crops]).cpu() for k in (2, 3, 4, 5)),
        blur_share=blur_share,
    )


@dataclass
class _Source:
    """What drawing from one kept frame needs, worked out once: its depth, view cosine and the
    pixels that may be read (inside the person, off the mask's edge), and its photo blurred."""

    depth: torch.Tensor  # (1, 1, H, W), 0 where the body is not
    cosine: torch.Tensor  # (1, 1, H, W)
    readable: torch.Tensor  # (1, 1, H, W) float {0, 1}
    photo: torch.Tensor  # (1, 3, H, W)


class ViewColour:
    """An avatar's kept frames, ready to draw any view of its body from them.

    ``faces`` (F, 3) of the body; ``rest`` (V, 3) its rest pose with the avatar's shape and
    clothes and ``torso`` its torso vertex ids (the frame directions are measured in).
    """

    def __init__(self, views: ViewPhotos, faces: torch.Tensor, rest: torch.Tensor, torso: torch.Tensor):
        self.views, self.faces, self.rest, self.torso = views, faces, rest, torso
        with torch.no_grad():
            self.directions = camera_directions(views.vertices, views.cameras(), rest, torso)
        share = BLUR_SHARE if views.blur_share is None else views.blur_share
        self.blur_share = share * blur_growth(view_spacing_deg(self.directions))
        self._sources: dict[int, _Source] = {}

    def __len__(self) -> int:
        return len(self.views)

    def _source(self, index: int) -> _Source:
        if index not in self._sources:
            from avatarcli.render import rasterize, view_cosine

            vertices, camera = self.views.vertices[index : index + 1], self.views.camera(index)
            with torch.no_grad():
                fragments = rasterize(vertices, self.faces, camera, cull_backfaces=True)
                cosine = view_cosine(vertices, self.faces, fragments, camera)
            mask = self.views.masks[index : index + 1]
            inner = -F.max_pool2d(-mask, 2 * EDGE_PX + 1, stride=1, padding=EDGE_PX) if EDGE_PX else mask
            rows = torch.nonzero((mask[0, 0] > 0.5).any(1)).flatten()
            height = float(rows[-1] - rows[0] + 1) if rows.numel() else float(mask.shape[-2])
            self._sources[index] = _Source(
                fragments.depth[:, None],
                cosine[:, None],
                (inner > 0.5).to(mask.dtype),
                person_blur(self.views.photos[index : index + 1], mask, self.blur_share * height),
            )
        return self._sources[index]

    def colour(
        self, vertices: torch.Tensor, camera, fragments, without: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The body's colour in the view that ``fragments`` (a rasterisation of posed
        ``vertices`` (B, V, 3) through ``camera``) shows: (B, 3, H, W) colours and (B, 1, H, W)
        their total weight, 0 where no kept frame saw the pixel. ``without`` leaves one kept
        frame out (what a view the avatar was not given gets)."""
        keep = [k for k in range(len(self)) if k != without] if len(self) > 1 else list(range(len(self)))
        with torch.no_grad():
            wanted = camera_directions(vertices, camera, self.rest, self.torso)
            frame_weights = blend_weights(wanted.to(self.directions), self.directions[keep])
            batch, height, width = fragments.shape
            pixels, image, face = fragments.foreground()
            bary = fragments.bary.reshape(-1, 3)[pixels]
            corners = self.faces.to(face.device)[face]  # (P, 3) vertex ids of each pixel's face
            colour = torch.zeros(3, batch * height * width, device=bary.device)
            total = torch.zeros(batch * height * width, device=bary.device)
            for b in range(batch):
                mine = image == b
                reads = []  # (colours (3, P), weights (P,)) of each frame that counts here
                for weight, k in zip(frame_weights[b].tolist(), keep, strict=True):
                    if weight > 0.0:
                        rgb, seen = self._read(k, bary[mine], corners[mine])
                        reads.append((rgb, weight * seen))
                if FLOATING and len(reads) > 1 and bool(mine.any()):
                    reads = _floated(reads, pixels[mine] % (height * width), width)
                for rgb, w in reads:
                    colour[:, pixels[mine]] += w * rgb
                    total[pixels[mine]] += w
            out = colour / total.clamp_min(1e-8)
            out = out.reshape(3, batch, height, width).transpose(0, 1)
            return out, total.reshape(batch, 1, height, width)

    def _read(
        self, index: int, bary: torch.Tensor, corners: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Colours (3, P) of body points (faces' ``corners`` + ``bary``) in kept frame ``index``
        and their weights (P,): view cosine ** power where the frame saw them, else 0."""
        source = self._source(index)
        camera = self.views.camera(index)
        vertices = self.views.vertices[index].to(bary)
        points = (bary[:, :, None] * vertices[corners]).sum(1)
        xy, z = camera.project(points)
        grid = torch.stack([xy[0, :, 0] / camera.width * 2 - 1, xy[0, :, 1] / camera.height * 2 - 1], -1)
        grid = grid[None, None]

        def read(image: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
            return F.grid_sample(image.to(bary), grid, mode=mode, align_corners=False, padding_mode="zeros")[
                0, :, 0
            ]

        depth = read(source.depth, "nearest")[0]
        seen = (depth > 0) & ((depth - z[0]).abs() < DEPTH_TOLERANCE) & (read(source.readable)[0] > 0.5)
        cosine = read(source.cosine)[0].clamp_min(0.0) ** COSINE_POWER
        return read(source.photo), cosine * seen.to(cosine.dtype)

    def render(
        self, vertices: torch.Tensor, camera, merged: torch.Tensor, uv: torch.Tensor, uv_faces: torch.Tensor,
        *, without: int | None = None, **render_options,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """:func:`~avatarcli.render.render_textured` with the kept frames' colour wherever one
        saw the pixel and ``merged`` (1 or B, 3, T, T) elsewhere: image (B, 3, H, W), mask."""
        from avatarcli.render import rasterize, render_textured

        with torch.no_grad():
            fragments = rasterize(vertices, self.faces, camera, cull_backfaces=True)
            colour, weight = self.colour(vertices, camera, fragments, without=without)
            texture = merged.expand(fragments.shape[0], -1, -1, -1)
            return render_textured(
                vertices, self.faces, uv, uv_faces, texture, camera,
                fragments=fragments, surface_colour=(colour, weight > 1e-6), **render_options,
            )  # fmt: skip


def _floated(
    reads: list[tuple[torch.Tensor, torch.Tensor]], pixels: torch.Tensor, width: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each frame's colours (3, P) at one image's body ``pixels`` (flat indices), moved by
    :func:`~avatarcli.texture.floating.align_sources` in the bounding box of the body."""
    from avatarcli.texture.floating import align_sources

    rows, cols = pixels // width, pixels % width
    top, left = int(rows.min()) - FLOAT_MARGIN, int(cols.min()) - FLOAT_MARGIN
    rows, cols = rows - top, cols - left
    height, box_width = int(rows.max()) + FLOAT_MARGIN + 1, int(cols.max()) + FLOAT_MARGIN + 1
    images = torch.zeros(len(reads), 3, height, box_width, dtype=reads[0][0].dtype, device=pixels.device)
    weights = torch.zeros(len(reads), height, box_width, dtype=reads[0][1].dtype, device=pixels.device)
    for k, (rgb, w) in enumerate(reads):
        images[k][:, rows, cols] = rgb
        weights[k][rows, cols] = w
    moved = align_sources(images, weights)
    return [(moved[k][:, rows, cols], w) for k, (_, w) in enumerate(reads)]


def person_blur(photo: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (``sigma`` in pixels) of the person alone, as the kept photos are blurred
    (also what ``benchmarks/eval_video_avatar.py --ceiling`` scores): photo (1, 3, H, W) and mask
    (1, 1, H, W) blurred together and divided, so no background bleeds into the outline (a plain
    blur of σ = 1.5 px cost 0.35 dB on the octopus views, whose background is bright)."""
    if sigma <= 0.05:
        return photo
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=photo.dtype, device=photo.device)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    both = F.pad(torch.cat([photo * mask, mask], 1), (radius, radius, radius, radius), mode="replicate")
    both = F.conv2d(both, g.view(1, 1, 1, -1).repeat(4, 1, 1, 1), groups=4)
    both = F.conv2d(both, g.view(1, 1, -1, 1).repeat(4, 1, 1, 1), groups=4)
    return both[:, :3] / both[:, 3:].clamp_min(1e-3)


#: keys of :func:`to_avatar_textures` in an avatar file's ``textures``
AVATAR_KEYS = ("view_photos", "view_K", "view_R", "view_t", "view_vertices")
#: per-frame textures of avatars made before the kept frames were photos
_LEGACY_KEYS = ("view_rgb", "view_weight", "view_directions")
#: the kept photos' blur share when it is not :data:`BLUR_SHARE` (a 0-dim float32 tensor), so
#: an avatar draws as it was made
BLUR_KEY = "view_blur"
#: a blur share beyond this (σ 5 % of the person's height) is no avatar's: a damaged file
MAX_BLUR_SHARE = 0.05


def to_avatar_textures(views: ViewPhotos) -> dict[str, torch.Tensor]:
    """Compact file form: photo and mask as uint8 (N, H, W, 4), cameras and bodies float32."""
    rgba = torch.cat([views.photos, views.masks], 1).clamp(0, 1)
    return {
        "view_photos": (rgba * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu(),
        "view_K": views.K.float().cpu(),
        "view_R": views.R.float().cpu(),
        "view_t": views.t.float().cpu(),
        "view_vertices": views.vertices.float().cpu(),
        **({BLUR_KEY: torch.tensor(float(views.blur_share))} if views.blur_share is not None else {}),
    }


def from_avatar_textures(textures: dict, vertex_count: int) -> ViewPhotos | None:
    """The avatar's kept frames, None when it has none; ValueError (a whole sentence for the
    user) when they are damaged or from an avatarcli that kept per-frame textures instead."""
    if any(k in textures for k in _LEGACY_KEYS):
        raise ValueError(
            "the avatar keeps per-frame textures, the view-dependent colour of an older avatarcli "
            "that this one no longer draws; recreate it (avatar merge --view-dependent, or avatar "
            "create --video)"
        )
    if not any(k in textures for k in AVATAR_KEYS):
        return None
    damaged = "the avatar's kept frames are damaged ({}); recreate it"
    try:
        rgba, K, R, t, vertices = (textures[k] for k in AVATAR_KEYS)
    except KeyError as exc:
        raise ValueError(damaged.format(f"no {exc.args[0]}")) from None
    if not all(isinstance(x, torch.Tensor) for x in (rgba, K, R, t, vertices)):
        raise ValueError(damaged.format("not tensors"))
    if rgba.dim() != 4 or rgba.shape[-1] != 4 or rgba.dtype != torch.uint8:
        raise ValueError(damaged.format(f"photos of shape {tuple(rgba.shape)}, not (N, H, W, 4) uint8"))
    if vertices.dim() != 3 or vertices.shape[1] != vertex_count:
        raise ValueError(
            damaged.format(f"bodies of shape {tuple(vertices.shape)}, not (N, {vertex_count}, 3)")
        )
    if not all(bool(torch.isfinite(x.float()).all()) for x in (K, R, t, vertices)):
        raise ValueError(damaged.format("cameras or bodies not finite"))
    blur = textures.get(BLUR_KEY)
    if blur is not None:
        if not isinstance(blur, torch.Tensor) or blur.numel() != 1:
            raise ValueError(damaged.format("their blur is not one number"))
        blur = float(blur.float().reshape(()))
        if not 0.0 <= blur <= MAX_BLUR_SHARE:  # also refuses NaN
            raise ValueError(damaged.format(f"blur share {blur} outside [0, {MAX_BLUR_SHARE}]"))
    rgba = rgba.permute(0, 3, 1, 2).float() / 255.0
    try:
        return ViewPhotos(
            rgba[:, :3], rgba[:, 3:], K.float(), R.float(), t.float(), vertices.float(), blur_share=blur
        )
    except ValueError:
        raise ValueError(damaged.format("their parts disagree on the frames")) from None
