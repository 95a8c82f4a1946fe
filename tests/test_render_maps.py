"""Derived renders: UV, texture lookup, normals, view angle, part ids, texel geometry,
soft silhouette, textured/feature rendering and preview sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from avatarcli.render import (
    DINAR_UV_BACKGROUND,
    Camera,
    dinar_uv_image,
    interpolate,
    rasterize,
    render_features,
    render_normals,
    render_part_ids,
    render_textured,
    render_uv,
    sample_texture,
    soft_silhouette,
    texel_geometry,
    texel_view_cosine,
    texel_visibility,
    view_cosine,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vectors"


def sphere(subdivisions: int = 3, radius: float = 0.5):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces, dtype=torch.long)


def quad(z: float, x0: float, x1: float, u0: float, u1: float):
    """A square facing +z (counter-clockwise seen from +z) with a UV island [u0, u1] x [0, 1]."""
    verts = torch.tensor([[x0, -0.5, z], [x1, -0.5, z], [x1, 0.5, z], [x0, 0.5, z]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    # v = 0 is the texture's top row, so the top edge (y = +0.5) gets v = 0
    uv = torch.tensor([[u0, 1.0], [u1, 1.0], [u1, 0.0], [u0, 0.0]])
    return verts, faces, uv, faces.clone()


FRONT = Camera.look_at((0, 0, 2.5), (0, 0, 0), focal_px=120, size=64)


# ---------------------------------------------------------------------------- texture lookup
def test_texture_lookup_follows_the_dinar_uv_convention():
    if not (REFERENCE / "dinar_uv_convention.safetensors").exists():
        pytest.skip("shared reference vectors not available")
    from safetensors.torch import load_file

    vec = load_file(str(REFERENCE / "dinar_uv_convention.safetensors"))
    size = 256
    rows, cols = torch.meshgrid(torch.arange(size.__float__()), torch.arange(size.__float__()), indexing="ij")
    # a texture that stores its own texel coordinates: bilinear lookup returns the exact position
    texture = torch.stack([cols, rows])[None].double()
    uv = vec["input/uv01"].double().view(1, 1, -1, 2)
    got = sample_texture(texture, uv)[0, :, 0].T  # (N, 2) = (col, row)
    torch.testing.assert_close(got.float(), vec["output/gridsample_xy"], atol=2e-3, rtol=0)


def test_uv_render_round_trips_through_a_coordinate_texture():
    verts, faces, uv, uv_faces = quad(0.0, -0.5, 0.5, 0.0, 1.0)
    frags = rasterize(verts, faces, FRONT)
    pixel_uv = render_uv(frags, uv, uv_faces)
    size = 32
    grid = torch.linspace(0, 1, size)
    texture = torch.stack([grid.view(1, -1).expand(size, size), grid.view(-1, 1).expand(size, size)])[None]
    looked_up = sample_texture(texture, pixel_uv, frags.mask)[0].permute(1, 2, 0)
    m = frags.mask[0]
    torch.testing.assert_close(looked_up[m], pixel_uv[0][m], atol=1e-5, rtol=0)
    # top of the image (small row) is the quad's top edge → v near 0; left → u near 0
    rows, cols = m.nonzero(as_tuple=True)
    top, left = (
        pixel_uv[0][rows.min(), cols[rows == rows.min()][0]],
        pixel_uv[0][rows[cols == cols.min()][0], cols.min()],
    )
    assert float(top[1]) < 0.1 and float(left[0]) < 0.1
    assert float(pixel_uv[0][~m].abs().max()) == 0.0


def test_per_corner_uvs_do_not_blend_across_seams():
    # two quads side by side sharing an edge in 3D, mapped to far-apart UV islands
    left = quad(0.0, -0.5, 0.0, 0.0, 0.25)
    right = quad(0.0, 0.0, 0.5, 0.75, 1.0)
    verts = torch.cat([left[0], right[0]])
    faces = torch.cat([left[1], right[1] + 4])
    uv = torch.cat([left[2], right[2]])
    frags = rasterize(verts, faces, FRONT)
    u = render_uv(frags, uv, faces)[0, ..., 0][frags.mask[0]]
    assert bool(((u <= 0.25 + 1e-5) | (u >= 0.75 - 1e-5)).all())


def test_texture_lookup_gradcheck():
    gen = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = (torch.rand(1, 3, 4, 2, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    mask = torch.ones(1, 3, 4, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda t, u: sample_texture(t, u, mask), (texture, uv))


def test_interpolation_is_differentiable_in_values_and_vertices():
    verts, faces = sphere(1)
    verts = verts.double()
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), focal_px=12, size=8).to(dtype=torch.float64)
    colours = torch.rand(len(verts), 2, dtype=torch.float64, requires_grad=True)
    frags = rasterize(verts, faces, cam)
    assert torch.autograd.gradcheck(lambda c: interpolate(c, frags, faces), (colours,))
    moving = verts.clone().requires_grad_(True)

    def render(v):
        return interpolate(colours.detach(), rasterize(v, faces, cam), faces)

    # gradients through the recomputed barycentrics (visibility held fixed by tiny perturbations)
    assert torch.autograd.gradcheck(render, (moving,), eps=1e-7, atol=1e-4)


# ------------------------------------------------------------------------- normals and angles
def test_sphere_normals_and_view_cosine():
    verts, faces = sphere(4)
    cam = Camera.look_at((0, 0, 2.0), (0, 0, 0), focal_px=100, size=64)
    frags = rasterize(verts, faces, cam)
    normals = render_normals(verts, faces, frags)
    points = interpolate(verts, frags, faces)
    m = frags.mask
    expected = torch.nn.functional.normalize(points[m], dim=-1)
    assert float((normals[m] * expected).sum(-1).min()) > 0.995
    cos = view_cosine(verts, faces, frags, cam)
    assert float(cos[0, 32, 32]) > 0.99  # centre of the sphere faces the camera
    assert float(cos[m].min()) < 0.35  # grazing near the outline
    assert float(cos[~m].abs().max()) == 0.0
    # camera-space normals: the camera-facing side points towards -z (towards the camera)
    cam_normals = render_normals(verts, faces, frags, cam)
    assert float(cam_normals[0, 32, 32, 2]) < -0.99
    axis = view_cosine(verts, faces, frags, cam, per_pixel_rays=False)
    assert float((axis - cos)[m].abs().max()) < 0.3


def test_part_id_render_labels_each_side():
    verts, faces = sphere(3)
    centroid_x = verts[faces].mean(1)[:, 0]
    parts = (centroid_x > 0).long() + 3  # 3 = world -X half, 4 = world +X half
    frags = rasterize(verts, faces, FRONT)
    ids = render_part_ids(frags, parts)[0]
    assert set(ids.unique().tolist()) == {-1, 3, 4}
    assert int(ids[32, 20]) == 3 and int(ids[32, 44]) == 4  # from the front, +X is on the right


# ------------------------------------------------------------------------------- texel space
def test_texel_geometry_positions_normals_and_visibility():
    size = 16
    near_quad = quad(0.3, -0.5, 0.5, 0.0, 0.45)  # in front, UV island on the left half
    far_quad = quad(-0.3, -0.4, 0.4, 0.55, 1.0)  # hidden behind it, UV island on the right half
    verts = torch.cat([near_quad[0], far_quad[0]])
    faces = torch.cat([near_quad[1], far_quad[1] + 4])
    uv = torch.cat([near_quad[2], far_quad[2]])
    geom = texel_geometry(verts, faces, uv, faces, size)
    assert geom.position.shape == (1, size, size, 3) and geom.mask.shape == (size, size)
    cols = torch.arange(size).float()
    left, right = geom.mask[:, cols / (size - 1) < 0.45], geom.mask[:, cols / (size - 1) > 0.55]
    assert bool(left.all()) and bool(right.all())
    # position is the affine image of the texel centre: x spans [-0.5, 0.5] over u in [0, 0.45]
    c = 3
    expected_x = -0.5 + (c / (size - 1)) / 0.45
    torch.testing.assert_close(geom.position[0, 5, c, 0], torch.tensor(expected_x), atol=1e-5, rtol=0)
    torch.testing.assert_close(geom.position[0, 0, c, 1], torch.tensor(0.5), atol=1e-5, rtol=0)  # v=0 → top
    assert float(geom.normal[0][geom.mask][:, 2].min()) > 0.999
    cos = texel_view_cosine(geom, FRONT)
    assert float(cos[0][geom.mask].min()) > 0.8
    frags = rasterize(verts, faces, FRONT)
    visible = texel_visibility(geom, FRONT, frags)[0]
    u = cols / (size - 1)
    assert bool(visible[:, u < 0.45].all())  # the front quad is seen, outline texels included
    assert not bool(visible[:, u > 0.55].any())  # the back quad is occluded


def test_texel_geometry_on_the_body(anny_body):
    out = anny_body()
    geom = texel_geometry(out.vertices.float(), anny_body.faces, anny_body.uv, anny_body.uv_faces, 64)
    coverage = float(geom.mask.float().mean())
    assert 0.2 < coverage < 0.95  # the UV islands cover part of the square
    pts = geom.position[0][geom.mask]
    lo, hi = out.vertices[0].min(0).values.float(), out.vertices[0].max(0).values.float()
    assert bool(((pts >= lo - 1e-4) & (pts <= hi + 1e-4)).all())
    norms = geom.normal[0][geom.mask].norm(dim=-1)
    assert float((norms - 1).abs().max()) < 1e-4


# ----------------------------------------------------------------------------- silhouettes
def test_soft_silhouette_matches_hard_mask_and_has_gradients():
    verts, faces = sphere(2)
    cam = Camera.look_at((0, 0, 2.5), (0, 0, 0), focal_px=60, size=40)
    hard = rasterize(verts, faces, cam).mask[0]
    soft = soft_silhouette(verts, faces, cam, sigma=0.5)[0]
    # agree away from the outline (SoftRas' union of per-face probabilities blurs it by ~sigma)
    pool = torch.nn.functional.max_pool2d
    h = hard[None, None].float()
    inner, outer = -pool(-h, 5, 1, 2)[0, 0] > 0.5, pool(h, 5, 1, 2)[0, 0] > 0.5
    assert bool((soft[inner] > 0.9).all()) and bool((soft[~outer] < 0.1).all())
    assert float(((soft > 0.5) == hard).float().mean()) > 0.95
    assert float(soft[20, 20]) > 0.99 and float(soft[0, 0]) < 1e-3
    # a target shifted to +x: moving the mesh towards +x must reduce the loss
    target = soft_silhouette(verts + torch.tensor([0.15, 0.0, 0.0]), faces, cam, sigma=0.5).detach()
    shift = torch.zeros(3, requires_grad=True)
    loss = ((soft_silhouette(verts + shift, faces, cam, sigma=0.5) - target) ** 2).sum()
    loss.backward()
    assert float(shift.grad[0]) < 0
    assert abs(float(shift.grad[0])) > 10 * abs(float(shift.grad[1]))


def test_soft_silhouette_chunking_is_exact():
    verts, faces = sphere(2)
    cam = Camera.look_at((0, 0, 2.5), (0, 0, 0), focal_px=60, size=24)
    for method in ("distance", "softras"):
        a = soft_silhouette(verts, faces, cam, method=method)
        b = soft_silhouette(verts, faces, cam, method=method, max_pairs=97)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="sigma"):
        soft_silhouette(verts, faces, cam, sigma=0)
    with pytest.raises(ValueError, match="method"):
        soft_silhouette(verts, faces, cam, method="blur")


def test_soft_silhouette_reuses_a_given_z_buffer_pass_exactly():
    """The photometric refinement hands over the culled pass it already made: same silhouette."""
    verts, faces = sphere(2)
    verts = verts + torch.tensor([0.1, -0.05, 0.0])
    cam = Camera.look_at((0, 0, 2.5), (0, 0, 0), focal_px=60, size=24)
    seen = rasterize(verts, faces, cam, cull_backfaces=True).face_index
    torch.testing.assert_close(
        soft_silhouette(verts, faces, cam, face_index=seen),
        soft_silhouette(verts, faces, cam),
        atol=0,
        rtol=0,
    )
    with pytest.raises(ValueError, match="face_index"):
        soft_silhouette(verts, faces, cam, face_index=seen[:, :-1])


def test_softras_silhouette_interior_is_covered_and_has_gradients():
    verts, faces = sphere(2)
    cam = Camera.look_at((0, 0, 2.5), (0, 0, 0), focal_px=60, size=40)
    hard = rasterize(verts, faces, cam).mask[0]
    shift = torch.zeros(3, requires_grad=True)
    soft = soft_silhouette(verts + shift, faces, cam, sigma=0.5, method="softras")[0]
    inner = -torch.nn.functional.max_pool2d(-hard[None, None].float(), 5, 1, 2)[0, 0] > 0.5
    assert bool((soft[inner] > 0.99).all())  # contour-only inside distances: no internal-edge dips
    assert float(((soft > 0.5) == hard).float().mean()) > 0.95
    soft[:, 25:].sum().backward()  # more coverage on the right wants the mesh to move right
    assert float(shift.grad[0]) > 0


def test_distance_silhouette_on_the_body_is_exact_at_half(anny_body):
    verts = anny_body().vertices.float()
    from avatarcli.render import framing_camera

    cam = framing_camera(verts[0], 30.0, 96)
    hard = rasterize(verts, anny_body.faces, cam).mask
    soft = soft_silhouette(verts, anny_body.faces, cam)
    assert float(((soft > 0.5) == hard).float().mean()) > 0.999
    # soft values only within 5 sigma (= 5 px, + 1 px for pixel-centre rounding) of the outline
    h = hard[None].float()
    dilated = torch.nn.functional.max_pool2d(h, 13, 1, 6)[0]
    eroded = -torch.nn.functional.max_pool2d(-h, 13, 1, 6)[0]
    band = dilated > eroded
    in_between = (soft > 1e-3) & (soft < 1 - 1e-3)
    assert bool(band[in_between].all()) and float(in_between.float().sum()) > 50


# ---------------------------------------------------------------------------- textured output
def test_render_textured_composites_over_background():
    verts, faces, uv, uv_faces = quad(0.0, -0.5, 0.5, 0.0, 1.0)
    texture = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    image, mask = render_textured(verts, faces, uv, uv_faces, texture, FRONT, background=(0.0, 0.0, 1.0))
    assert image.shape == (1, 3, 64, 64) and mask.shape == (1, 1, 64, 64)
    on, off = mask[0, 0] > 0.5, mask[0, 0] < 0.5
    torch.testing.assert_close(image[0][:, on].mean(1), torch.tensor([0.9, 0.2, 0.1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(image[0][:, off].mean(1), torch.tensor([0.0, 0.0, 1.0]))
    photo = torch.rand(1, 3, 64, 64)
    over_photo, _ = render_textured(verts, faces, uv, uv_faces, texture, FRONT, background=photo)
    assert torch.equal(over_photo[0][:, off], photo[0][:, off])
    shaded, _ = render_textured(verts, faces, uv, uv_faces, texture, FRONT, shade=True)
    assert float(shaded[0, 0][on].max()) <= 0.9 + 1e-5


def test_render_features_for_the_neural_renderer():
    verts, faces = sphere(2)
    uv = torch.rand(len(verts), 2, generator=torch.Generator().manual_seed(1))
    neural = torch.randn(2, 16, 32, 32)
    batch = torch.stack([verts, verts])
    out = render_features(batch, faces, uv, faces, neural, FRONT)
    # one mesh, two cameras: per-vertex values and vertices broadcast over the batch
    two_views = Camera.orbit(distance=2.5, yaw_deg=[0.0, 90.0], focal_px=120, size=64)
    frags = rasterize(verts[None].expand(2, -1, -1), faces, two_views)
    cos = view_cosine(verts[None], faces, frags, two_views)
    assert cos.shape == (2, 64, 64) and float(cos[:, 32, 32].min()) > 0.99
    assert out.features.shape == (2, 16, 64, 64) and out.mask.shape == (2, 1, 64, 64)
    assert float(out.features.abs().mul(1 - out.mask).max()) == 0.0
    dinar = dinar_uv_image(out.uv, out.mask)
    assert dinar.shape == (2, 2, 64, 64)
    assert bool((dinar[:, :, 0, 0] == DINAR_UV_BACKGROUND).all())
    m = out.mask[:, 0] > 0
    assert float(dinar.permute(0, 2, 3, 1)[m].abs().max()) <= 1.0


# ---------------------------------------------------------------------------------- previews
def test_contact_sheet_and_orbit_views(tmp_path):
    from PIL import Image

    from avatarcli.render.preview import orbit_views, overlay, save_contact_sheet

    verts, faces = sphere(2)
    verts = verts * torch.tensor([0.5, 1.6, 0.4])
    views = orbit_views(verts, faces, size=48)
    assert [name for name, _ in views] == ["front", "side", "back"]
    for _, img in views:
        assert img.shape == (3, 48, 48)
        assert float((img < 0.99).float().mean()) > 0.1  # the body is drawn over white
    photo = np.zeros((48, 48, 3), np.uint8)
    blended = overlay(photo, views[0][1], torch.ones(48, 48), alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (48, 48, 3)
    tiles = [("input", photo), ("overlay", blended), *views, ("mask", np.ones((10, 20), np.float32))]
    path = save_contact_sheet(tmp_path / "out" / "preview.png", tiles, tile_size=64, columns=3)
    with Image.open(path) as sheet:
        assert sheet.format == "PNG" and sheet.size == (3 * 64 + 4 * 4, 2 * (64 + 20) + 3 * 4)
    assert not list((tmp_path / "out").glob("*.part*"))
    with pytest.raises(ValueError):
        save_contact_sheet(tmp_path / "empty.png", [])
