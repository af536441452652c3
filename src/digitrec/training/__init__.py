"""Training (torch): configs and presets, the one loop, state and resume, calibration, the extra class.

This package's `__init__` imports nothing: `training.config` stays importable without torch.
"""
