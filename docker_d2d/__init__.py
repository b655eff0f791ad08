"""docker-d2d: copy images directly between container engines, sending only missing layers."""

__version__ = "0.1.0"
