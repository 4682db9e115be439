"""mpc: a compiler from trained networks to multiplierless, spiking and fixed-point hardware forms."""
__version__ = "0.1.0"
