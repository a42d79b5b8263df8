"""Custom code of the aspects_regions bundle (importable as ``scripts`` when MONAI runs the bundle)."""
