"""MONAI Deploy operators of the ASPECTS application (one job each; the work is in aspects/)."""
