"""recdistill: distil heavy recommendation rankers into small, fast, served students."""

__version__ = "0.1.0"
