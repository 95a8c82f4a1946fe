"""Loading the two networks diffusion inpainting needs from the weights registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from avatarcli.nets.dinar_unet import DinarUNet
    from avatarcli.nets.dinar_vq import DinarVQ

INPAINTING_WEIGHTS = ("dinar_vq", "dinar_unet")


def load_inpainting_networks(
    device: str | torch.device = "cpu", folder: Path | None = None
) -> tuple[DinarVQ, DinarUNet]:
    """(VQ autoencoder, EMA diffusion UNet) in eval mode; fails loudly when they are not installed."""
    from avatarcli.nets import load_network
    from avatarcli.nets.dinar_unet import DinarUNet
    from avatarcli.nets.dinar_vq import DinarVQ
    from avatarcli.weights_registry import require_weights

    paths = require_weights(list(INPAINTING_WEIGHTS), folder)
    vq = load_network(DinarVQ, paths["dinar_vq"], device)
    unet = load_network(DinarUNet, paths["dinar_unet"], device)
    return vq, unet
