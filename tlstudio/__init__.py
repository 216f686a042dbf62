"""Transfer Learning Studio: adapt pretrained networks to your own data, offline."""
__version__ = "0.1.0"
