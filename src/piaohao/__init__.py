"""piaohao: an aggregated payment platform that never loses or invents money."""

__version__ = "0.1.0"
