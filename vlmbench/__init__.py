"""vlmbench: evaluation suite for VLM (Xu et al., 2021)."""

__version__ = "0.1.0"
