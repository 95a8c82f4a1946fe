"""The rasteriser against an embree ray-casting oracle, plus cameras, barycentrics and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from avatarcli.render import Camera, framing_camera, rasterize, rasterize_screen, visible_faces
from avatarcli.render.rasterizer import check_mesh


def icosphere(subdivisions: int = 3, radius: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces, dtype=torch.long)


def embree_oracle(
    vertices: torch.Tensor, faces: torch.Tensor, camera: Camera
) -> tuple[np.ndarray, np.ndarray]:
    """Face id (-1 miss) and camera-space depth per pixel centre, by casting one ray per pixel."""
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    mesh = trimesh.Trimesh(vertices.double().numpy(), faces.numpy(), process=False)
    origin, dirs = camera.pixel_rays(torch.float64)
    dirs = dirs[0].reshape(-1, 3).numpy()
    origins = np.repeat(origin.numpy(), len(dirs), axis=0)
    tri, ray, loc = RayMeshIntersector(mesh).intersects_id(
        origins, dirs, multiple_hits=False, return_locations=True
    )
    face = np.full(len(dirs), -1)
    face[ray] = tri
    depth = np.zeros(len(dirs))
    R, t = camera.R[0].double().numpy(), camera.t[0].double().numpy()
    depth[ray] = (loc @ R.T + t)[:, 2]
    return face.reshape(camera.height, camera.width), depth.reshape(camera.height, camera.width)


def assert_matches_oracle(
    vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, cull: bool = False
) -> None:
    frags = rasterize(vertices[None], faces, camera, cull_backfaces=cull)
    ours = frags.face_index[0].numpy()
    ref_face, ref_depth = embree_oracle(vertices, faces, camera)
    fg_ref, fg_ours = ref_face >= 0, ours >= 0
    union = fg_ref | fg_ours
    assert union.sum() > 50, "the test view should show the mesh"
    # silhouettes agree except possibly for pixel centres lying exactly on an outline edge
    assert (fg_ref == fg_ours)[union].mean() >= 0.995
    both = fg_ref & fg_ours
    assert (ours[both] == ref_face[both]).mean() >= 0.995
    depth = frags.depth[0].numpy()
    rel = np.abs(depth[both] - ref_depth[both]) / ref_depth[both]
    # same face → same plane; a tie at a shared edge differs only by float noise too
    assert rel.max() < 1e-4
    bary = frags.bary[0][frags.mask[0]]
    torch.testing.assert_close(bary.sum(-1), torch.ones(len(bary)), atol=1e-5, rtol=0)
    assert float(bary.min()) > -1e-4


# ------------------------------------------------------------------------------------- cameras
def test_look_at_follows_opencv_axes():
    cam = Camera.look_at(eye=(0, 0, 3), target=(0, 0, 0), focal_px=100, size=(64, 48))
    pix, depth = cam.project(torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]]))
    assert torch.allclose(pix[0, 0], torch.tensor([32.0, 24.0]))  # centre of the image
    assert pix[0, 1, 0] > 32  # world +X (the body's left) appears to the right from the front
    assert pix[0, 2, 1] < 24  # world +Y (up) appears towards the top: image y points down
    assert torch.allclose(depth[0], torch.full((3,), 3.0))
    assert torch.allclose(cam.center, torch.tensor([[0.0, 0.0, 3.0]]))


@pytest.mark.parametrize(("yaw", "where"), [(0, (0, 0, 1)), (90, (1, 0, 0)), (180, (0, 0, -1))])
def test_orbit_yaw_places_camera_front_side_back(yaw, where):
    cam = Camera.orbit(center=(0, 1, 0), distance=2.0, yaw_deg=yaw)
    expected = torch.tensor(where, dtype=torch.float32) * 2.0 + torch.tensor([0.0, 1, 0])
    torch.testing.assert_close(cam.center[0], expected, atol=1e-5, rtol=0)
    pix, _ = cam.project(torch.tensor([[0.0, 1.0, 0.0]]))
    torch.testing.assert_close(pix[0, 0], torch.tensor([256.0, 256.0]), atol=1e-3, rtol=0)


def test_scale_and_crop_keep_the_projection_consistent():
    cam = Camera.look_at((0.2, 0.3, 2.5), (0, 0, 0), focal_px=300, size=(120, 80))
    pts = torch.randn(1, 20, 3) * 0.3
    pix, _ = cam.project(pts)
    pix2, _ = cam.scale(2.0).project(pts)
    torch.testing.assert_close(pix2, pix * 2)
    pix3, _ = cam.crop(10, 5, 50, 40).project(pts)
    torch.testing.assert_close(pix3, pix - torch.tensor([10.0, 5.0]))
    assert cam.scale(2.0).width == 240 and cam.crop(10, 5, 50, 40).height == 40


def test_framing_camera_fits_the_body_in_frame():
    verts, _ = icosphere(2)
    verts = verts * torch.tensor([0.4, 1.8, 0.3])  # a tall, thin "body"
    cams = framing_camera(verts, [0.0, 90.0, 180.0], size=128, fill=0.9)
    pix, depth = cams.project(verts[None].expand(3, -1, -1))
    assert bool((depth > 0).all())
    assert float(pix.min()) >= 128 * 0.05 - 1 and float(pix.max()) <= 128 * 0.95 + 1
    # the body's height fills the frame's height to within the margin
    extent = pix[..., 1].amax(-1) - pix[..., 1].amin(-1)
    assert bool((extent > 128 * 0.75).all())


# ----------------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("size", [(64, 64), (160, 96), (257, 257)])
def test_rasterize_matches_embree_on_a_sphere(size):
    verts, faces = icosphere(3)
    cam = Camera.look_at((0.4, 0.3, 1.6), (0.02, -0.01, 0), focal_px=1.1 * max(size), size=size)
    assert_matches_oracle(verts, faces, cam)


def test_rasterize_matches_embree_on_a_capsule_with_backface_culling():
    mesh = trimesh.creation.capsule(height=1.0, radius=0.25, count=[24, 24])
    verts = torch.tensor(mesh.vertices, dtype=torch.float32)
    faces = torch.tensor(mesh.faces, dtype=torch.long)
    cam = Camera.look_at((1.8, 0.4, 0.6), (0, 0, 0), up=(0, 0, 1), focal_px=160, size=128)
    assert_matches_oracle(verts, faces, cam, cull=True)


def _posed_anny(body, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    pose = torch.zeros(1, 55, 3)
    pose[0, 1:22] = (torch.rand(21, 3, generator=gen) - 0.5) * 0.8  # body joints, ±23°
    pose[0, 0] = torch.tensor([0.0, math.radians(25.0 * seed), 0.0])
    with torch.no_grad():
        return body(pose=pose.to(body.uv.dtype)).vertices[0].float()


@pytest.mark.parametrize(("seed", "size", "yaw"), [(0, 128, 0.0), (1, 256, 35.0), (2, 200, 180.0)])
def test_rasterize_matches_embree_on_posed_anny(anny_body, seed, size, yaw):
    verts = _posed_anny(anny_body, seed)
    cam = framing_camera(verts, yaw, size)
    assert_matches_oracle(verts, anny_body.faces, cam)


def test_body_faces_are_front_facing_with_negative_pixel_area(anny_body):
    verts = _posed_anny(anny_body, 0)
    cam = framing_camera(verts, 0.0, 128)
    full = rasterize(verts, anny_body.faces, cam)
    culled = rasterize(verts, anny_body.faces, cam, cull_backfaces=True)
    # a closed body: culling back faces changes nothing visible
    assert (full.face_index == culled.face_index).float().mean() > 0.999
    xy, _ = cam.project(verts)
    tri = xy[0][anny_body.faces[full.face_index[full.mask].unique()]]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    assert bool(((e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]) < 0).all())


# ----------------------------------------------------------------------- barycentrics, grads
def test_barycentrics_are_perspective_correct():
    # a slanted quad textured by its world x: interpolating x with the barycentrics must give the
    # exact intersection of each pixel ray with the plane
    verts = torch.tensor([[-1.0, -1, 2], [1, -1, 5], [1, 1, 5], [-1, 1, 2]])
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    cam = Camera.from_intrinsics(torch.tensor([[40.0, 0, 32], [0, 40, 32], [0, 0, 1]]), 64, 64)
    frags = rasterize(verts, faces, cam)
    corner_x = verts[faces][..., 0]  # (F, 3)
    x = (frags.bary * corner_x[frags.face_index.clamp_min(0)]).sum(-1)
    origin, dirs = cam.pixel_rays()
    # plane through the quad: z = 3.5 + 1.5 x  → ray t*d: t dz = 3.5 + 1.5 t dx
    t = 3.5 / (dirs[..., 2] - 1.5 * dirs[..., 0])
    expected_x = t * dirs[..., 0]
    m = frags.mask
    torch.testing.assert_close(x[m], expected_x[m], atol=1e-4, rtol=0)
    torch.testing.assert_close(frags.depth[m], (t * dirs[..., 2])[m], atol=1e-4, rtol=0)


def test_gradients_reach_vertices_through_barycentrics():
    verts, faces = icosphere(2)
    verts = verts.clone().requires_grad_(True)
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), focal_px=60, size=48)
    frags = rasterize(verts, faces, cam)
    frags.depth.sum().backward()
    assert verts.grad is not None and float(verts.grad.abs().sum()) > 0
    # the camera sits at +z looking down -z: moving vertices towards -z makes them deeper
    assert float(verts.grad[:, 2].sum()) < 0


def test_fragments_for_known_faces_match_a_full_rasterisation():
    """The z-buffer pass done once without gradients, the barycentrics redone with them."""
    from avatarcli.render.rasterizer import fragments_for_faces

    verts, faces = icosphere(2)
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), focal_px=60, size=48)
    full = rasterize(verts, faces, cam, cull_backfaces=True)
    with torch.no_grad():
        ids = rasterize(verts + 0.0, faces, cam, cull_backfaces=True).face_index
    moving = verts.clone().requires_grad_(True)
    again = fragments_for_faces(moving, faces, cam, ids)
    assert torch.equal(again.face_index, full.face_index) and torch.equal(again.mask, full.mask)
    torch.testing.assert_close(again.bary, full.bary, atol=0, rtol=0)
    torch.testing.assert_close(again.depth, full.depth, atol=0, rtol=0)
    again.depth.sum().backward()
    assert float(moving.grad.abs().sum()) > 0


def test_batch_renders_each_mesh_with_its_own_camera():
    verts, faces = icosphere(2)
    batch = torch.stack([verts, verts + torch.tensor([0.3, 0, 0])])
    cams = Camera.orbit(distance=2.0, yaw_deg=[0.0, 90.0], focal_px=80, size=40)
    frags = rasterize(batch, faces, cams)
    for k in range(2):
        single = Camera(cams.K[k], cams.R[k], cams.t[k], 40, 40)
        one = rasterize(batch[k], faces, single)
        assert torch.equal(one.face_index[0], frags.face_index[k])
    # one mesh, many cameras
    turntable = rasterize(verts, faces, cams)
    back = rasterize(verts, faces, Camera(cams.K[1], cams.R[1], cams.t[1], 40, 40))
    assert turntable.face_index.shape == (2, 40, 40)
    assert torch.equal(turntable.face_index[1], back.face_index[0])
    assert not torch.equal(turntable.face_index[0], turntable.face_index[1])


def test_small_max_pairs_gives_identical_result():
    verts, faces = icosphere(3)
    cam = Camera.look_at((0.3, 0.2, 1.5), (0, 0, 0), focal_px=150, size=96)
    ref = rasterize(verts, faces, cam)
    chunked = rasterize(verts, faces, cam, max_pairs=64)
    assert torch.equal(ref.face_index, chunked.face_index)


# ---------------------------------------------------------------------------- bad input
def test_empty_and_degenerate_meshes_render_background():
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), focal_px=50, size=16)
    empty = rasterize(torch.zeros(1, 0, 3), torch.zeros(0, 3, dtype=torch.long), cam)
    assert not bool(empty.mask.any()) and bool((empty.face_index == -1).all())
    flat = torch.tensor([[0.0, 0, 0], [0.1, 0.1, 0], [0.2, 0.2, 0]])  # collinear: zero area
    frags = rasterize(flat, torch.tensor([[0, 1, 2], [0, 0, 0]]), cam)
    assert not bool(frags.mask.any())
    assert bool(torch.isfinite(frags.bary).all()) and bool(torch.isfinite(frags.depth).all())


def test_vertices_behind_the_camera_are_not_drawn():
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), focal_px=50, size=32)
    verts, faces = icosphere(2)
    behind = verts + torch.tensor([0.0, 0.0, 3.0])  # entirely behind the camera
    assert not bool(rasterize(behind, faces, cam).mask.any())
    straddle = verts * 3.0  # radius 1.5 around the origin, the camera at z=2 is outside but close
    straddle = straddle + torch.tensor([0.0, 0.0, 1.0])  # now the camera is inside the sphere
    frags = rasterize(straddle, faces, cam)
    assert bool(torch.isfinite(frags.depth).all())
    assert bool((frags.depth[frags.mask] > 1e-3).all())


def test_nan_input_raises_a_clear_error():
    verts, faces = icosphere(1)
    verts[3, 1] = float("nan")
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), focal_px=50, size=16)
    with pytest.raises(ValueError, match="NaN"):
        rasterize(verts, faces, cam)
    with pytest.raises(ValueError, match="outside"):
        check_mesh(torch.zeros(3, 3), torch.tensor([[0, 1, 5]]))


def test_rasterize_screen_draws_a_known_triangle():
    # right triangle covering pixel centres with x + y < 7 (x, y = j + 0.5, i + 0.5)
    xy = torch.tensor([[[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]]])
    frags = rasterize_screen(xy, torch.ones(1, 3), torch.tensor([[0, 1, 2]]), 8, 8)
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    expected = (i + j + 1.0) <= 8.0
    assert torch.equal(frags.mask[0], expected)
    ids = visible_faces(xy, torch.ones(1, 3), torch.tensor([[0, 1, 2]]), 8, 8)
    assert torch.equal(ids, frags.face_index)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    verts, faces = icosphere(4)
    batch = torch.stack([verts, verts * 0.8])
    cams = Camera.orbit(distance=2.0, yaw_deg=[0.0, 120.0], focal_px=300, size=256)
    cpu = rasterize(batch, faces, cams)
    gpu = rasterize(batch.cuda(), faces.cuda(), cams.to("cuda"))
    assert (gpu.face_index.cpu() == cpu.face_index).float().mean() > 0.999
    m = cpu.mask & gpu.mask.cpu()
    torch.testing.assert_close(gpu.depth.cpu()[m], cpu.depth[m], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("size", [512, 1024])
def test_rasterize_matches_embree_on_posed_anny_at_high_resolution(anny_body, size):
    verts = _posed_anny(anny_body, 3)
    assert_matches_oracle(verts, anny_body.faces, framing_camera(verts, 60.0, size))
