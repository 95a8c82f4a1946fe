"""``avatar export``: an avatar as a rigged, textured glTF binary (``.glb``) for Blender, Unity,
three.js — optionally carrying a motion as its animation.

What the file holds: the avatar's body at rest (its shape and clothing offsets baked into the
mesh), split where the UV layout has seams, skinned to the body's 55 joints with its four
strongest weights per vertex (glTF's common limit; ``influences=8`` keeps all of anny's, for
Blender), the colour texture, and with ``--motion`` the retargeted clip as joint rotations plus
root translation. Posing it in a viewer is then the
same linear blend skinning the tool uses. What skinning alone would miss on a clip — SMPL-X's
pose-corrective shapes, the weights four influences drop — is baked for that clip into a few
morph targets animated with it (:mod:`avatarcli.body.baking`; on by default for SMPL-X, asked for
with ``corrective_shapes=True`` otherwise). What it cannot hold is said in the result's notes:
view-dependent colour from kept photos and neural renderers (the file has the merged colour
texture they start from), and SMPL-X's pose-corrective shapes without a clip to bake them for.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avatarcli.avatar_file import rgb_for_file
from avatarcli.errors import UserError
from avatarcli.pipelines.animate import MotionEdits

ProgressFn = Callable[[int, int, str], None]
#: influences per vertex in the file: 4 (JOINTS_0 / WEIGHTS_0, which every viewer reads) or 8
#: (a second set, which Blender reads and three.js ignores)
INFLUENCES = (4, 8)


@dataclass
class ExportOptions(MotionEdits):
    motion: str | None = None
    overwrite: bool = False
    preview: bool = True
    influences: int = 4
    #: > 0: rebuild the colour texture from the avatar's kept photos with this many refinement
    #: steps (sharper where the photos look; see :func:`texture_from_kept_photos`)
    refine_steps: int = 0
    #: bake the clip's pose-corrective shapes (and what the dropped influences would move) into
    #: morph targets: None = for bodies that have pose correctives (SMPL-X), True/False = always/never
    corrective_shapes: bool | None = None
    #: morph targets are added until every vertex of every frame is this close (m) to the tool's posing
    corrective_tolerance: float = 5e-4
    #: at most this many SVD components (each one morph target, two where its weight changes sign)
    corrective_max_targets: int = 32


@dataclass
class ExportResult:
    output: Path
    preview: Path | None
    vertices: int
    triangles: int
    joints: int
    texture_size: int
    frames: int
    fps: float | None
    seconds: float
    #: how far the file's 4-influence skinning puts vertices from the tool's own posing (metres)
    skinning_error_max: float | None = None
    skinning_error_mean: float | None = None
    #: morph targets baked for the clip, and the largest vertex error the file would have without them
    morph_targets: int = 0
    corrective_error_before: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "output": str(self.output),
            "preview": str(self.preview) if self.preview else None,
            "vertices": self.vertices,
            "triangles": self.triangles,
            "joints": self.joints,
            "texture_size": self.texture_size,
            "animation_frames": self.frames,
            "fps": self.fps,
            "seconds": round(self.seconds, 3),
            "skinning_error_max_mm": _millimetres(self.skinning_error_max, 3),
            "skinning_error_mean_mm": _millimetres(self.skinning_error_mean, 4),
            "morph_targets": self.morph_targets,
            "skinning_error_without_morphs_max_mm": _millimetres(self.corrective_error_before, 3),
            "notes": self.notes,
        }


def _millimetres(metres: float | None, digits: int) -> float | None:
    return None if metres is None else round(metres * 1000, digits)


def strongest_influences(weights: torch.Tensor, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex's ``count`` largest skinning weights (V, J) → joint indices and weights (V, count),
    renormalised to sum to 1."""
    top = weights.float().topk(count, dim=1)
    values = top.values.clamp_min(0)
    values = values / values.sum(1, keepdim=True).clamp_min(1e-12)
    indices = torch.where(values > 0, top.indices, 0)  # glTF: an unused slot names joint 0
    return indices.cpu().numpy().astype(np.int64), values.cpu().numpy().astype(np.float32)


def split_uv_seams(faces: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One file vertex per distinct (mesh vertex, UV corner) pair, as glTF needs one UV per
    vertex: returns the mesh vertex of each file vertex, its UV index, and the triangles."""
    pairs = np.stack([faces.reshape(-1), uv_faces.reshape(-1)], 1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], inverse.reshape(-1, 3)


def _png(texture: torch.Tensor) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(texture.cpu().numpy()).save(out, format="PNG")
    return out.getvalue()


def _clip(body, rest_joints: torch.Tensor, opts: ExportOptions):
    """The retargeted motion as a :class:`SkeletonClip` (glTF's (x, y, z, w) rotations, the root's
    path), and its poses and translations for the tool's own posing (what the file is checked
    against)."""
    from avatarcli.body.kinematics import axis_angle_to_matrix, matrix_to_quaternion
    from avatarcli.media.gltf import SkeletonClip
    from avatarcli.pipelines.animate import motion_poses

    pose, transl, fps = motion_poses(opts.motion, body, opts)
    wxyz = matrix_to_quaternion(axis_angle_to_matrix(pose.double()))
    rotations = torch.cat([wxyz[..., 1:], wxyz[..., :1]], -1).numpy()
    root = (rest_joints[0].double() + transl.double()).numpy()
    name = Path(opts.motion).stem
    return SkeletonClip(rotations.astype(np.float32), root.astype(np.float32), fps, name), pose, transl


def export_glb(
    avatar_path: str | os.PathLike,
    output: str | os.PathLike,
    opts: ExportOptions | None = None,
    *,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Write the avatar (and ``opts.motion``) as a rigged ``.glb``; see the module docstring."""
    from avatarcli.body.joints import SMPLX_JOINT_NAMES, SMPLX_PARENTS
    from avatarcli.media.gltf import SkinnedMesh, pose_glb, read_glb, write_glb
    from avatarcli.pipelines.neural_render import avatar_uv_layout
    from avatarcli.pipelines.posing import load_avatar_with_body
    from avatarcli.render import vertex_normals

    opts = opts or ExportOptions()
    if opts.influences not in INFLUENCES:
        raise UserError(f"--influences {opts.influences}: choose 4 (every viewer) or 8 (Blender; exact)")
    if opts.refine_steps < 0:
        raise UserError(f"--refine-steps must be ≥ 0, not {opts.refine_steps}")
    if opts.corrective_shapes and not opts.motion:
        raise UserError("--corrective-shapes bakes them for a clip; name one with --motion")
    target = Path(output)
    if target.suffix.lower() != ".glb":
        raise UserError(f"{target}: avatar export writes binary glTF; name the output .glb")
    if target.exists() and not opts.overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it")
    report = progress or (lambda *_: None)
    t0 = time.perf_counter()
    device = torch.device("cpu")
    avatar, body = load_avatar_with_body(avatar_path, device)
    if "rgb" not in avatar.textures:
        raise UserError(f"{avatar_path} has no colour texture to export; recreate it with avatar create")
    report(1, 5, "mesh")
    shape = avatar.shape.to(device).reshape(1, -1)
    with torch.no_grad():
        rest = body.rest(shape)
    rest_vertices = rest.vertices[0].double().numpy()  # clothing offsets included
    rest_joints = rest.joints[0].double()
    layout = avatar_uv_layout(avatar, body)
    faces = body.faces.cpu().numpy()
    source, uv_index, triangles = split_uv_seams(faces, layout.uv_faces.cpu().numpy())
    joint_ids, weights = strongest_influences(body.skin_weights, opts.influences)
    texture = avatar.textures["rgb"]
    if opts.refine_steps > 0:
        texture = texture_from_kept_photos(
            avatar, body, layout, opts.refine_steps, lambda message: report(1, 5, f"texture: {message}")
        )
    mesh = SkinnedMesh(
        positions=rest_vertices[source].astype(np.float32),
        normals=vertex_normals(rest.vertices[0], body.faces)[0].numpy()[source].astype(np.float32),
        uv=layout.uv.cpu().numpy()[uv_index].astype(np.float32),
        triangles=triangles.astype(np.uint32),
        joints=joint_ids[source],
        weights=weights[source],
        joint_names=tuple(SMPLX_JOINT_NAMES),
        parents=tuple(SMPLX_PARENTS),
        joint_positions=rest_joints.numpy().astype(np.float32),
        texture_png=_png(texture),
        name=Path(avatar_path).stem,
    )
    clip = pose = transl = baked = None
    baking = False
    if opts.motion:
        report(2, 5, "motion")
        clip, pose, transl = _clip(body, rest_joints, opts)
        baking = _wants_correctives(opts, body)
        if baking:
            baked = _bake_correctives(body, shape, rest, joint_ids, weights, pose, transl, opts, report)
        if baked is not None:
            mesh.morph_targets = baked.targets[:, source]
            mesh.morph_names = tuple(f"corrective_{k:02d}" for k in range(len(baked.targets)))
            clip.morph_weights = baked.weights
    report(4, 5, "writing")
    write_glb(target, mesh, clip, overwrite=opts.overwrite)
    result = ExportResult(
        output=target,
        preview=None,
        vertices=len(source),
        triangles=len(triangles),
        joints=len(SMPLX_JOINT_NAMES),
        texture_size=int(texture.shape[0]),
        frames=0 if clip is None else int(clip.rotations.shape[0]),
        fps=None if clip is None else float(clip.fps),
        seconds=0.0,
        notes=_notes(avatar, body, opts.refine_steps, bool(opts.motion), opts.corrective_shapes),
    )
    if opts.motion and baking and baked is None:
        result.notes.append(
            f"no corrective morph targets were needed: the file's skinning poses the clip within "
            f"{opts.corrective_tolerance * 1000:g} mm of the tool's"
        )
    if baked is not None:
        result.morph_targets = len(baked.targets)
        result.corrective_error_before = baked.error_before
        if baked.error_after > opts.corrective_tolerance:
            result.notes.append(
                f"{len(baked.targets)} corrective morph targets (the most) leave the file up to "
                f"{baked.error_after * 1000:.1f} mm from the tool's posing; a shorter clip needs fewer"
            )
    glb = read_glb(target)  # what a viewer will see, read back from the file itself
    if pose is not None:
        errors = []
        with torch.no_grad():
            for k in np.unique(np.linspace(0, pose.shape[0] - 1, min(24, pose.shape[0])).round().astype(int)):
                ours = body(shape=shape, pose=pose[k : k + 1], transl=transl[k : k + 1]).vertices[0]
                theirs = pose_glb(glb, int(k))
                errors.append(np.linalg.norm(theirs - ours.double().numpy()[source], axis=1))
        result.skinning_error_max = float(np.max(errors))
        result.skinning_error_mean = float(np.mean(errors))
    if opts.preview:
        result.preview = _write_preview(glb, target, texture, pose is not None)
    report(5, 5, "done")
    result.seconds = time.perf_counter() - t0
    return result


def texture_from_kept_photos(avatar, body, layout, steps: int, progress=None) -> torch.Tensor:
    """A view-dependent avatar's single colour texture (T, T, 3) uint8, rebuilt from its kept
    photos and refined ``steps`` steps through the render.

    Why: an avatar that keeps its photos draws from them, so ``avatar merge``/``create --video``
    skip refining the texture that only fills what no photo saw; exported, that texture is all
    there is. On 4 iPER turn frames (256²) 64 steps redraw the photos at 21.16 dB / 0.771 instead
    of 20.33 / 0.668 (25 s); a view none of them saw scores the same (−0.03 dB)."""
    from avatarcli.render import Camera
    from avatarcli.texture import body_texel_maps
    from avatarcli.texture.build import TextureView, build_rgb_texture
    from avatarcli.texture.view_dependent import from_avatar_textures

    kept = from_avatar_textures(avatar.textures, body.num_vertices)
    if kept is None:
        raise UserError(
            "--refine-steps rebuilds the texture from the photos an avatar keeps, and this one keeps "
            "none (avatar merge of ≥ 2 photos and avatar create --video keep them)"
        )
    height, width = kept.photos.shape[-2:]
    views = [
        TextureView(
            kept.vertices[i : i + 1],
            Camera(kept.K[i], kept.R[i], kept.t[i], width, height),
            kept.photos[i : i + 1],
            kept.masks[i, 0] > 0.5,
        )
        for i in range(len(kept.photos))
    ]
    own = avatar.uv_layout == body.name
    size = avatar.texture_size
    maps = body_texel_maps(body, size, avatar.shape.reshape(1, -1), layout=None if own else layout)
    built = build_rgb_texture(
        body, views, texture_size=size, refine_steps=steps, maps=maps, progress=progress
    )
    return rgb_for_file(built.texture)


def _wants_correctives(opts: ExportOptions, body) -> bool:
    if opts.corrective_shapes is not None:
        return opts.corrective_shapes
    return body.has_pose_correctives


def _bake_correctives(body, shape, rest, joint_ids, weights, pose, transl, opts: ExportOptions, report):
    """The clip's corrective morph targets for the file's own skinning (its kept influences)."""
    from avatarcli.body.baking import bake_shapes, skinning_residuals

    rest_positions = rest.vertices[0].float()  # as the file stores them

    def posed(frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            count = len(frames)
            return body(shape=shape.expand(count, -1), pose=pose[frames], transl=transl[frames]).vertices

    def residuals(frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return skinning_residuals(
                posed,
                rest_positions,
                torch.from_numpy(joint_ids),
                torch.from_numpy(weights),
                rest.joints[0],
                body.parents,
                pose,
                transl,
                frames,
            )

    return bake_shapes(
        residuals,
        pose.shape[0],
        tolerance=opts.corrective_tolerance,
        max_targets=opts.corrective_max_targets,
        progress=lambda done, total: report(3, 5, f"corrective shapes {done}/{total} frames"),
    )


def _notes(
    avatar, body, refine_steps: int = 0, has_motion: bool = False, correctives: bool | None = None
) -> list[str]:
    notes = []
    if refine_steps > 0:
        notes.append(f"the colour texture was rebuilt from the kept photos and refined {refine_steps} steps")
    elif any(key.startswith("view_") for key in avatar.textures):
        notes.append(
            "view-dependent colour (the kept photos) is not in the file: it has the merged texture "
            "(--refine-steps 64 rebuilds a sharper one from the photos)"
        )
    if avatar.renderer is not None or avatar.has_neural_texture:
        notes.append(
            "the neural renderer is not in the file: it has the colour texture the renderer starts from"
        )
    if body.has_pose_correctives and not has_motion:
        notes.append(
            "SMPL-X's pose-corrective shapes depend on the pose, so a file without a clip has plain "
            "skinning (with --motion they are baked into morph targets for that clip)"
        )
    elif body.has_pose_correctives and correctives is False:
        notes.append("SMPL-X's pose-corrective shapes were left out (--no-corrective-shapes): plain skinning")
    return notes


def _write_preview(glb, target: Path, texture: torch.Tensor, animated: bool) -> Path:
    """Front and back of the file's own mesh at rest (and mid-clip), drawn from the file's data."""
    from PIL import Image

    from avatarcli.io_utils import atomic_write
    from avatarcli.media.gltf import pose_glb
    from avatarcli.render import framing_camera, render_textured

    primitive = glb.document["meshes"][0]["primitives"][0]
    triangles = torch.from_numpy(glb.accessor(primitive["indices"]).astype(np.int64).reshape(-1, 3))
    uv = torch.from_numpy(glb.accessor(primitive["attributes"]["TEXCOORD_0"]).copy())
    image = (texture.float() / 255.0).permute(2, 0, 1)[None]
    poses = [(None, 0.0), (None, 180.0)]
    if animated:
        frames = glb.accessor(glb.document["animations"][0]["samplers"][0]["input"]).shape[0]
        poses.append((frames // 2, 0.0))
    tiles = []
    with torch.no_grad():
        for frame, yaw in poses:
            vertices = torch.from_numpy(pose_glb(glb, frame)).float()[None]
            camera = framing_camera(vertices, yaw_deg=yaw, size=384, fill=0.9)
            drawn, _ = render_textured(
                vertices, triangles, uv, triangles, image, camera, background=(1.0, 1.0, 1.0)
            )
            tiles.append((drawn[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    preview = target.with_name(target.stem + "_glb_preview.png")  # never the avatar's own preview
    with atomic_write(preview) as tmp:  # the .glb's companion: replaced with it
        Image.fromarray(np.concatenate(tiles, 1)).save(tmp, format="PNG")
    return preview
