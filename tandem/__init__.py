"""Tandem: edge-cloud split inference. The command line lives in `tandem.cli`."""

__version__ = "0.1.0"
