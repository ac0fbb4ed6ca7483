"""nmroute: a software router and middlebox framework on netmap's model."""

__version__ = "0.1.0"
