"""A picture to judge a fit at a glance: the photo, the fitted body's silhouette and wireframe,
the detected keypoints (green) and where the fit puts them (red, joined by a line)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avatarcli.fitting.quality import silhouette


def render_overlay(image: np.ndarray, fit, body, max_side: int = 1024) -> np.ndarray:
    """(H', W', 3) uint8 RGB overlay at most ``max_side`` pixels on its longer side."""
    import cv2
    import torch

    from avatarcli.fitting.landmarks import body_landmark_map

    h, w = image.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    canvas = (
        image if factor == 1.0 else cv2.resize(image, (round(w * factor), round(h * factor)), cv2.INTER_AREA)
    )
    canvas = canvas.astype(np.float32)
    cam = fit.camera()
    shape, pose, transl = fit.body_params(device=body.faces.device)
    with torch.no_grad():
        out = body(shape=shape, pose=pose, transl=transl)
        landmarks = body_landmark_map(body).gather(out.vertices, out.joints)
    vpix, vdepth = cam.project(out.vertices.cpu())
    lpix, _ = cam.project(landmarks.cpu())
    vpix, vdepth, lpix = vpix[0].numpy() * factor, vdepth[0].numpy(), lpix[0].numpy() * factor
    faces = body.faces.cpu().numpy()
    sil = silhouette(vpix, faces, canvas.shape[1], canvas.shape[0], vdepth).astype(bool)
    tint = np.array([80.0, 140.0, 255.0])
    canvas[sil] = 0.55 * canvas[sil] + 0.45 * tint
    out_img = np.clip(canvas, 0, 255).astype(np.uint8)
    # faint wireframe of the camera-facing triangles (negative signed area in y-down pixels,
    # the render core's convention), then the silhouette outline on top
    tri = vpix[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    facing = (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) < 0
    lines = out_img.copy()
    polys = list(np.round(tri[facing] * 4).astype(np.int32))  # 2 bits of sub-pixel precision
    cv2.polylines(lines, polys, True, (20, 40, 120), 1, cv2.LINE_AA, 2)
    out_img = cv2.addWeighted(out_img, 0.7, lines, 0.3, 0.0)
    contours, _ = cv2.findContours(sil.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out_img, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    radius = max(2, round(0.006 * max(out_img.shape[:2])))
    if fit.keypoints is not None:
        for (x, y, c), (u, v) in zip(fit.keypoints, lpix, strict=True):
            if c < 0.2 or not np.isfinite([u, v]).all():
                continue
            p, q = (round(x * factor), round(y * factor)), (round(u), round(v))
            cv2.line(out_img, p, q, (255, 255, 0), 1, cv2.LINE_AA)
            cv2.circle(out_img, p, radius, (0, 220, 0), -1, cv2.LINE_AA)
            cv2.circle(out_img, q, radius, (230, 30, 30), -1, cv2.LINE_AA)
    return out_img


def save_overlay(path: str | os.PathLike, image: np.ndarray, fit, body, max_side: int = 1024) -> Path:
    """Write :func:`render_overlay` as a PNG (atomically)."""
    from PIL import Image

    from avatarcli.io_utils import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        Image.fromarray(render_overlay(image, fit, body, max_side)).save(tmp, format="PNG")
    return path
