"""augstudy: does adding GAN-made images make a small medical-image classifier better?"""

__version__ = "0.1.0"
