"""Texture inpainting: DINAR's diffusion in the VQ latent (when its weights are installed).

Modules are imported explicitly (``from avatarcli.inpaint.texture import inpaint_texture``) so
that importing this package stays cheap for the CLI.
"""
