"""Pinhole cameras in the OpenCV convention, batched, with look-at and orbit constructors.

Conventions (shared by every stage):

* camera axes: x right, y **down**, z **forward** (into the scene); ``x_cam = R @ x_world + t``;
* intrinsics ``K`` in pixels: ``u = fx * x/z + s * y/z + cx``, ``v = fy * y/z + cy``;
* pixel (row ``i``, column ``j``) covers the square ``[j, j+1) × [i, i+1)`` of continuous image
  coordinates, so its **centre is at (j + 0.5, i + 0.5)**. A principal point of
  ``(W/2, H/2)`` is therefore the exact image centre (DINAR's and SMPLify-X's convention). A
  camera calibrated with OpenCV, where pixel centres sit on integers, needs ``cx + 0.5, cy + 0.5``;
* world space is the body protocol's: Y-up, metres, the character facing +Z. ``yaw = 0`` in
  :meth:`Camera.orbit` looks at the character's front, 90° at its left side (+X), 180° at its back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def _as_tensor(x, dtype=torch.float32, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype, device=device) if device is not None else x.to(dtype=dtype)
    return torch.as_tensor(x, dtype=dtype, device=device)


def intrinsics(focal_px: float | Sequence[float], width: int, height: int, principal=None) -> torch.Tensor:
    """A (3, 3) K with square or (fx, fy) focal length and the principal point at the centre."""
    if isinstance(focal_px, (int, float)):
        fx = fy = float(focal_px)
    else:
        fx, fy = (float(f) for f in focal_px)
    cx, cy = (width / 2.0, height / 2.0) if principal is None else (float(p) for p in principal)
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def look_at_rotation(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """World→camera rotation (B, 3, 3) whose z axis points from ``eye`` to ``target``.

    Rows are the camera axes in world coordinates: right = forward × up, down = forward × right,
    which makes ``up`` appear towards the top of the image (y down).
    """
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.linalg.cross(forward, up.expand_as(forward), dim=-1)
    if bool((right.norm(dim=-1) < 1e-8).any()):
        raise ValueError("look_at: the viewing direction is parallel to 'up'; pass another 'up' vector")
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    return torch.stack([right, down, forward], dim=-2)


@dataclass
class Camera:
    """A batch of pinhole cameras sharing one image size.

    ``K`` (B, 3, 3) intrinsics in pixels, ``R`` (B, 3, 3) and ``t`` (B, 3) world→camera,
    ``width``/``height`` in pixels. A batch of one broadcasts over any batch of meshes.
    """

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.K.dim() == 2:
            self.K = self.K[None]
        if self.R.dim() == 2:
            self.R = self.R[None]
        if self.t.dim() == 1:
            self.t = self.t[None]
        if self.K.shape[-2:] != (3, 3) or self.R.shape[-2:] != (3, 3) or self.t.shape[-1] != 3:
            raise ValueError("Camera needs K (B,3,3), R (B,3,3) and t (B,3)")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"Camera image size must be positive, got {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)

    # ----------------------------------------------------------------------------- constructors
    @classmethod
    def from_intrinsics(
        cls,
        K: torch.Tensor,
        width: int,
        height: int,
        R: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> Camera:
        """A camera at the origin looking down +z (DINAR's default: identity rotation) unless R, t."""
        K = _as_tensor(K)
        eye = torch.eye(3, dtype=K.dtype, device=K.device)
        R = eye if R is None else _as_tensor(R, K.dtype, K.device)
        t = torch.zeros(3, dtype=K.dtype, device=K.device) if t is None else _as_tensor(t, K.dtype, K.device)
        return cls(K=K, R=R, t=t, width=width, height=height)

    @classmethod
    def look_at(
        cls,
        eye,
        target,
        up=(0.0, 1.0, 0.0),
        focal_px: float = 1000.0,
        size: int | tuple[int, int] = 512,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target``; ``size`` is an int or (width, height)."""
        width, height = (size, size) if isinstance(size, int) else size
        eye_t = _as_tensor(eye).reshape(-1, 3)
        target_t = _as_tensor(target, device=eye_t.device).reshape(-1, 3)
        up_t = _as_tensor(up, device=eye_t.device).reshape(-1, 3)
        R = look_at_rotation(eye_t, target_t, up_t)
        t = -(R @ eye_t.unsqueeze(-1)).squeeze(-1)
        K = intrinsics(focal_px, width, height).to(eye_t.device).expand(R.shape[0], 3, 3).clone()
        return cls(K=K, R=R, t=t, width=width, height=height)

    @classmethod
    def orbit(
        cls,
        center=(0.0, 0.0, 0.0),
        distance: float = 3.0,
        yaw_deg: float | Sequence[float] = 0.0,
        elevation_deg: float = 0.0,
        focal_px: float = 1000.0,
        size: int | tuple[int, int] = 512,
    ) -> Camera:
        """Cameras on a circle around ``center`` (Y-up): yaw 0 = front (+Z), 90 = +X side, 180 = back.

        A sequence of yaws gives a batch of cameras (a turntable).
        """
        yaws = torch.as_tensor([yaw_deg] if isinstance(yaw_deg, (int, float)) else list(yaw_deg))
        yaw = torch.deg2rad(yaws.float())
        elev = math.radians(elevation_deg)
        direction = torch.stack(
            [
                torch.sin(yaw) * math.cos(elev),
                torch.full_like(yaw, math.sin(elev)),
                torch.cos(yaw) * math.cos(elev),
            ],
            dim=-1,
        )
        c = _as_tensor(center).reshape(1, 3)
        return cls.look_at(c + distance * direction, c.expand(len(yaws), 3), (0.0, 1.0, 0.0), focal_px, size)

    # ------------------------------------------------------------------------------- geometry
    @property
    def batch_size(self) -> int:
        return int(self.R.shape[0])

    @property
    def device(self) -> torch.device:
        return self.R.device

    @property
    def center(self) -> torch.Tensor:
        """Camera centres in world coordinates, (B, 3)."""
        return -(self.R.transpose(-1, -2) @ self.t.unsqueeze(-1)).squeeze(-1)

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) world points → (B, N, 3) camera coordinates (z = depth along the axis)."""
        return points @ self.R.transpose(-1, -2).to(points.dtype) + self.t.to(points.dtype).unsqueeze(-2)

    def camera_to_pixels(self, points_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3) camera points → (B, N, 2) continuous pixel coordinates and (B, N) depth.

        Points at or behind z = 0 get non-finite pixel coordinates; callers mask them by depth.
        """
        K = self.K.to(points_cam.dtype)
        z = points_cam[..., 2]
        x = points_cam[..., 0] / z
        y = points_cam[..., 1] / z
        u = K[:, 0, 0, None] * x + K[:, 0, 1, None] * y + K[:, 0, 2, None]
        v = K[:, 1, 1, None] * y + K[:, 1, 2, None]
        return torch.stack([u, v], dim=-1), z

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3) or (N, 3) world points → pixel coordinates (B, N, 2) and depth (B, N)."""
        if points.dim() == 2:
            points = points[None]
        return self.camera_to_pixels(self.world_to_camera(points))

    def pixel_rays(self, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Ray origins (B, 3) and unit world directions (B, H, W, 3) through every pixel centre."""
        j = torch.arange(self.width, dtype=dtype, device=self.device) + 0.5
        i = torch.arange(self.height, dtype=dtype, device=self.device) + 0.5
        ii, jj = torch.meshgrid(i, j, indexing="ij")
        pix = torch.stack([jj, ii, torch.ones_like(jj)], dim=-1)  # (H, W, 3)
        k_inv = torch.linalg.inv(self.K.to(dtype))  # (B, 3, 3)
        d_cam = torch.einsum("bij,hwj->bhwi", k_inv, pix)
        d_world = torch.einsum("bji,bhwj->bhwi", self.R.to(dtype), d_cam)  # R^T d
        return self.center.to(dtype), torch.nn.functional.normalize(d_world, dim=-1)

    # ------------------------------------------------------------------------------ utilities
    def to(self, device=None, dtype=None) -> Camera:
        def move(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype or x.dtype)

        return Camera(move(self.K), move(self.R), move(self.t), self.width, self.height)

    def expand(self, batch: int) -> Camera:
        """Broadcast a one-camera batch to ``batch`` cameras (no copy)."""
        if self.batch_size == batch:
            return self
        if self.batch_size != 1:
            raise ValueError(f"camera batch {self.batch_size} does not match mesh batch {batch}")
        return Camera(
            self.K.expand(batch, 3, 3),
            self.R.expand(batch, 3, 3),
            self.t.expand(batch, 3),
            self.width,
            self.height,
        )

    def scale(self, factor: float) -> Camera:
        """The same view at ``factor`` × the resolution (exact with pixel centres at +0.5)."""
        S = torch.diag(torch.tensor([factor, factor, 1.0], dtype=self.K.dtype, device=self.K.device))
        width, height = round(self.width * factor), round(self.height * factor)
        return Camera(S @ self.K, self.R, self.t, width, height)

    def crop(self, left: int, top: int, width: int, height: int) -> Camera:
        """The camera of the image window starting at (left, top) of size width × height."""
        K = self.K.clone()
        K[:, 0, 2] -= left
        K[:, 1, 2] -= top
        return Camera(K, self.R, self.t, width, height)


def framing_camera(
    vertices: torch.Tensor,
    yaw_deg: float | Sequence[float] = 0.0,
    size: int | tuple[int, int] = 512,
    *,
    fill: float = 0.9,
    elevation_deg: float = 0.0,
    fov_deg: float = 20.0,
) -> Camera:
    """Orbit cameras around a body's bounding box that frame it to ``fill`` of the image.

    The camera circles the bounding-box centre at a distance giving a ``fov_deg`` lens for the
    box's extent; the focal length is then tuned so the projected box corners just fit.
    """
    pts = vertices.detach().reshape(-1, 3).float().cpu()
    if pts.numel() == 0:
        raise ValueError("framing_camera: the mesh has no vertices")
    lo, hi = pts.min(0).values, pts.max(0).values
    center = (lo + hi) / 2
    radius = float((hi - lo).norm() / 2) or 1.0
    distance = radius / math.tan(math.radians(fov_deg) / 2) + radius
    width, height = (size, size) if isinstance(size, int) else size
    cam = Camera.orbit(center, distance, yaw_deg, elevation_deg, focal_px=1.0, size=(width, height))
    corners = torch.stack(
        [torch.tensor([x, y, z]) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    cam_pts = cam.world_to_camera(corners[None].expand(cam.batch_size, 8, 3))
    extent_x = (cam_pts[..., 0] / cam_pts[..., 2]).abs().amax(-1)
    extent_y = (cam_pts[..., 1] / cam_pts[..., 2]).abs().amax(-1)
    focal = torch.minimum(
        fill * width / 2 / extent_x.clamp_min(1e-9), fill * height / 2 / extent_y.clamp_min(1e-9)
    )
    K = cam.K.clone()
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    return Camera(K.to(vertices.device), cam.R.to(vertices.device), cam.t.to(vertices.device), width, height)
