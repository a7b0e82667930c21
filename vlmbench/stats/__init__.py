"""Statistics over saved per-example values: bootstrap intervals and paired comparisons (and, with them, the
family-specific estimators that recompute each metric from resampled examples). Reads arrays, never models."""
