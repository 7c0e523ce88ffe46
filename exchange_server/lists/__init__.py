"""The national top-500 list: versions, diffs, per-province slices and acknowledgements."""
