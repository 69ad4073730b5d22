"""Diffusion: flow-matching noise, schedules and denoiser wrappers (``flow``), the samplers
(``samplers``), and the one frame-condition mechanism behind every editing feature (``conditions``)."""
