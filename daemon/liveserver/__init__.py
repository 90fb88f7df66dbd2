"""The local Live API server: protocol-faithful, limits enforced, time-scalable."""
