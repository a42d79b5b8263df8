"""Custom code of the infarct_seg bundle (importable as ``scripts`` when MONAI runs the bundle)."""
