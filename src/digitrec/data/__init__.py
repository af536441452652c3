"""Data sets: IDX files, MNIST (find, verify, download, the holdout split), synthetic renders, corruptions."""
