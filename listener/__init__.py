"""DICOM Storage SCP with a durable spool that runs the ASPECTS app per study (docs/deployment.md)."""
