"""One trial's stages: data, model, training with harvest and stopping, calibration and evaluation, the outcome."""
