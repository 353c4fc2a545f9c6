"""invitelink: personal survey invitation links behind SoSci-, Survey.is- and R4I-compatible APIs."""

__version__ = "0.1.0"
