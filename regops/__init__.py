"""regops: provision and operate private Docker registries with pyinfra."""

__version__ = "0.3.0"
