"""vgtui: watch gradients vanish, live, in your terminal."""

__version__ = "0.1.0"
