"""kopf handlers (thin: they delegate to the reconcilers). Importing registers them."""

from voice_operator.handlers import lifecycle, pools, profiles

__all__ = ["lifecycle", "pools", "profiles"]
