"""snnc: a compiler and deployment toolchain for spiking neural networks."""

__version__ = "0.1.0"
