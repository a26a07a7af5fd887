"""kopf handlers (thin: they delegate to the reconcilers). Importing registers them."""

from voice_operator.handlers import lifecycle
from voice_operator.pools import handlers as pools
from voice_operator.profiles import handlers as profiles

__all__ = ["lifecycle", "pools", "profiles"]
