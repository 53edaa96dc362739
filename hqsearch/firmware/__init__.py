"""From a trained model to firmware: tracing and bit-exact emulation, hls4ml projects and their pragmas."""
