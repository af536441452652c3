"""digitrec: handwritten-digit recognition.

Try: `digitrec --help`. Importing this package is cheap: heavy modules (torch, onnxruntime,
matplotlib) are imported only by the functions that need them.
"""

__version__ = "0.1.0"
