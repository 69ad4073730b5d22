"""Training of the default model: bucketed native-size data from the procedural world, flow matching
with condition masks, EMA, atomic checkpoints with exact resume, and DDP through torchrun."""
