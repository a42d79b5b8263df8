"""Pure, typed building blocks of the ASPECTS application (no MONAI Deploy imports here).

Operators in ``operators/`` call these functions; tests exercise them without a pipeline.
"""

__version__ = "0.9.0"
APP_NAME = "aspects-ncct"
