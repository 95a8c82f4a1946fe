"""The texture stage on the real anny body through our renderer: maps, sampling, occlusion, fill, refine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avatarcli.body.joints import SMPLX_JOINT_NAMES
from avatarcli.body.parts import PART_NAMES
from avatarcli.texture.body_maps import body_texel_maps, sample_view, textured_render_fn
from avatarcli.texture.fill import fill_unseen_texels
from avatarcli.texture.metrics import psnr
from avatarcli.texture.occlusion import pad_texture_islands
from avatarcli.texture.refine import refine_texture

T = 128
IMAGE = 256


@pytest.fixture(scope="module")
def body():
    from avatarcli.body import load_body

    return load_body("anny")


@pytest.fixture(scope="module")
def maps(body):
    return body_texel_maps(body, T)


def _camera():
    from avatarcli.render import Camera

    return Camera.orbit(center=(0.0, 0.0, 0.0), distance=3.0, yaw_deg=0, focal_px=400, size=IMAGE)


def _texture(maps, colours: dict[str, tuple[float, float, float]], default=(0.1, 0.3, 0.9)):
    texture = torch.tensor(default)[:, None, None].expand(3, T, T).clone()
    for name, colour in colours.items():
        texture[:, maps.parts == PART_NAMES.index(name)] = torch.tensor(colour)[:, None]
    return texture * maps.mask


def test_body_texel_maps_cover_the_layout_and_join_its_seams(maps):
    from scipy.sparse.csgraph import connected_components

    assert maps.mask.float().mean() > 0.4
    assert set(maps.parts[maps.mask].unique().tolist()) == set(range(len(PART_NAMES)))
    assert torch.all(maps.parts[~maps.mask] == -1)
    assert maps.graph.num_seam_edges > 100
    _, label = connected_components(maps.graph.adjacency, directed=False)
    assert torch.bincount(torch.as_tensor(label)).max() > 0.98 * maps.graph.num_nodes
    assert torch.all(maps.colormap[:, maps.mask].amax(dim=0) > 0.3)


def test_front_view_samples_the_truth_and_fill_completes_it(body, maps):
    from avatarcli.render import render_textured

    pattern = 0.15 * torch.sin(maps.positions[..., 1] * 20)
    truth = (_texture(maps, {"head": (0.8, 0.6, 0.5), "left_upper_leg": (0.2, 0.2, 0.2)}) + pattern).clamp(
        0, 1
    )
    truth = truth * maps.mask
    vertices = body.rest().vertices
    camera = _camera()
    photo, mask = render_textured(
        vertices,
        body.faces,
        body.uv,
        body.uv_faces,
        pad_texture_islands(truth, maps.mask, 3),
        camera,
        background=0.0,
    )
    sampled, occluded = sample_view(body, vertices, camera, photo, mask[:, 0] > 0.5, maps)
    exact = sampled.sampled[0, 0]
    assert exact.sum() > 0.15 * maps.mask.sum()
    assert (sampled.rgb[0] - truth)[:, exact].abs().mean() < 0.03
    assert occluded.sum() < 0.01 * mask.sum()  # an A-pose has (almost) no self-occlusion
    _, plain = sample_view(body, vertices, camera, photo, mask[:, 0] > 0.5, maps, surface_jump_filter=False)
    assert plain.sum() > 2 * occluded.sum()  # DINAR's detector also drops the part junctions
    filled = fill_unseen_texels(sampled.rgb[0], sampled.filled[0, 0], maps.graph, "mirror+back+harmonic")
    assert torch.all(filled[:, maps.mask].amax(dim=0) > 0)  # every texel got a colour
    unseen = maps.mask & ~sampled.filled[0, 0]
    assert float(psnr(filled, truth, unseen)[0]) > 18.0

    # Refinement against the photo improves a degraded texture.
    render, coverage = textured_render_fn(body, vertices, camera, background=0.0)
    assert torch.equal(coverage, mask > 0.5)
    noisy = (filled + 0.1 * torch.randn(filled.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    person = mask > 0.5
    before = float(psnr(render(noisy[None]), photo, person)[0])
    result = refine_texture(
        noisy,
        sampled.filled[0, 0],
        render,
        photo,
        person,
        sampled.view_cos[0, 0],
        steps=6,
        lr=0.05,
        render_mask=coverage,
    )
    assert float(psnr(render(result.texture[None]), photo, person)[0]) > before + 1.0


def test_occlusion_detector_keeps_the_arm_colour_off_the_torso(body, maps):
    from avatarcli.render import render_textured

    def posed(elbow: float):
        pose = torch.zeros(1, 55, 3)
        pose[0, SMPLX_JOINT_NAMES.index("right_shoulder")] = torch.tensor([0.0, 0.0, 0.5])
        pose[0, SMPLX_JOINT_NAMES.index("right_elbow")] = torch.tensor([0.0, elbow, 0.0])
        return body(pose=pose).vertices

    red = (0.9, 0.2, 0.1)
    truth = _texture(maps, {"right_upper_arm": red, "right_lower_arm": red, "right_hand": red})
    camera = _camera()
    # The photo's forearm is bent a little more than the fitted one (a 0.05 rad fitting error).
    photo, mask = render_textured(
        posed(1.8),
        body.faces,
        body.uv,
        body.uv_faces,
        pad_texture_islands(truth, maps.mask, 3),
        camera,
        background=0.0,
    )
    fitted = posed(1.9)
    torso = maps.parts == PART_NAMES.index("torso")
    wrong = []
    for detect in (False, True):
        sampled, _ = sample_view(body, fitted, camera, photo, mask[:, 0] > 0.5, maps, detect_occlusion=detect)
        rgb = sampled.rgb[0]
        wrong.append(int(((rgb[0] > rgb[2]) & sampled.filled[0, 0] & torso).sum()))
    assert wrong[0] >= 20
    assert wrong[1] <= 0.4 * wrong[0]


def test_build_rgb_texture_from_front_and_back_views(body, maps):
    from avatarcli.render import Camera, render_textured
    from avatarcli.texture.build import TextureView, build_rgb_texture

    pattern = 0.2 * torch.sin(maps.positions[..., 1] * 15) * torch.cos(maps.positions[..., 0] * 9)
    truth = ((_texture(maps, {"head": (0.8, 0.6, 0.5)}) + pattern).clamp(0, 1)) * maps.mask
    vertices = body.rest().vertices
    views = []
    for yaw in (0, 180):
        camera = Camera.orbit(center=(0.0, 0.0, 0.0), distance=3.0, yaw_deg=yaw, focal_px=400, size=IMAGE)
        photo, mask = render_textured(
            vertices, body.faces, body.uv, body.uv_faces, pad_texture_islands(truth, maps.mask, 3), camera
        )
        views.append(TextureView(vertices, camera, photo, mask[:, 0] > 0.5))
    messages = []
    one = build_rgb_texture(body, views[:1], texture_size=T, refine_steps=0, maps=maps)
    two = build_rgb_texture(body, views, texture_size=T, refine_steps=2, maps=maps, progress=messages.append)
    assert two.stats["texels_seen"] > 1.6 * one.stats["texels_seen"]
    assert two.stats["refine_views"] == 2 and any("refining" in m for m in messages)
    assert two.texture.shape == (3, T, T) and torch.all(two.texture[:, maps.mask].amax(0) > 0)
    assert float(psnr(two.texture, truth, maps.mask)[0]) > float(psnr(one.texture, truth, maps.mask)[0]) + 1
    assert float(psnr(two.texture, truth, two.seen)[0]) > 25.0
    with pytest.raises(ValueError):
        build_rgb_texture(body, views, fill_method="blur", maps=maps)


def test_refinement_crops_each_photo_to_its_person_without_changing_what_it_sees(body, maps):
    """The refinement renders only a window around the person; its renders there equal the full
    frame's, and photos of different sizes are refined together in one batch."""
    from avatarcli.render import Camera, render_textured
    from avatarcli.texture.build import TextureView, refinement_views

    truth = _texture(maps, {"head": (0.8, 0.6, 0.5)}) * maps.mask
    vertices = body.rest().vertices
    views = []
    for yaw, size in ((0, 256), (90, 320)):
        camera = Camera.orbit(center=(0.3, 0.0, 0.0), distance=4.0, yaw_deg=yaw, focal_px=300, size=size)
        photo, mask = render_textured(vertices, body.faces, body.uv, body.uv_faces, truth, camera)
        views.append(TextureView(vertices, camera, photo, mask[:, 0] > 0.5))
    cropped = refinement_views(views)
    assert len({tuple(v.image.shape[-2:]) for v in cropped}) == 1  # one batch
    height, width = cropped[0].image.shape[-2:]
    assert height * width < 0.5 * 256 * 256  # most of the frame was background
    for full, crop in zip(views, cropped, strict=True):
        assert int(crop.mask.sum()) == int(full.mask.sum())  # every person pixel is kept
        render, cover = textured_render_fn(body, crop.vertices, crop.camera)
        assert crop.mask.dtype == torch.bool and torch.equal(cover[:, 0] > 0.5, crop.mask)
        assert torch.allclose(render(truth[None]) * cover, crop.image * cover, atol=1e-4)


def test_refinement_scales_a_very_tall_person_down_to_what_the_texture_can_use(body, maps):
    """A person taller than the cap is refined at a lower resolution where the render still
    matches the (area-averaged) photo; a person under the cap is left at full resolution."""
    from avatarcli.render import Camera, render_textured
    from avatarcli.texture import psnr
    from avatarcli.texture.build import TextureView, mask_height_px, refinement_views

    smooth = 0.5 + 0.3 * torch.sin(maps.positions[..., 1] * 6) * torch.cos(maps.positions[..., 0] * 4)
    truth = torch.stack([smooth, 1 - smooth, 0.5 * smooth]) * maps.mask
    vertices = body.rest().vertices
    camera = Camera.orbit(center=(0.0, 0.0, 0.0), distance=3.0, yaw_deg=0, focal_px=500, size=400)
    photo, mask = render_textured(
        vertices, body.faces, body.uv, body.uv_faces, pad_texture_islands(truth, maps.mask, 3), camera
    )
    view = TextureView(vertices, camera, photo, mask[:, 0] > 0.5)
    tall = mask_height_px(view)
    assert tall > 250
    (same,) = refinement_views([view], max_person_px=tall)
    assert mask_height_px(same) == tall
    (small,) = refinement_views([view], max_person_px=tall // 2)
    assert abs(mask_height_px(small) - tall // 2) <= 2 and small.mask.dtype == torch.bool
    assert small.image.shape[-2:] == (small.camera.height, small.camera.width)
    render, cover = textured_render_fn(body, small.vertices, small.camera)
    inner = -F.max_pool2d(-((cover[:, 0] > 0.5) & small.mask).float()[:, None], 3, 1, 1)[:, 0] > 0.5
    rendered = render(pad_texture_islands(truth, maps.mask, 3)[None])
    assert float(psnr(rendered, small.image, inner)[0]) > 45  # the scaled camera sees the scaled photo
    shifted = torch.roll(small.image, 1, dims=-1)  # one pixel off would be far worse
    assert float(psnr(rendered, shifted, inner)[0]) < float(psnr(rendered, small.image, inner)[0]) - 6
