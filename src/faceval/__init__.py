"""faceval: how well does a face-recognition model verify your own people?"""

__version__ = "0.1.0"
