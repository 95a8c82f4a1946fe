"""User-level jobs (create, merge, animate, fit, sample, …) as plain Python functions.

Orchestration only: each pipeline calls the stages (perception, body, fitting, render,
texture, nets, inpaint, motion) through their public functions.
"""
