"""Reports (torch): evaluation, ensembles and robustness, with their plots."""
