"""napari-xai: saliency maps for PyTorch models on CT and MRI, aligned in physical space."""

__version__ = "0.1.0"
