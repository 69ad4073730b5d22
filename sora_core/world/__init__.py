"""The procedural world: seeded scene specs, an opencv renderer, captions, prompt expansion,
an analytic captioner and world-simulation metrics."""
