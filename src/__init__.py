"""CVM: a Customer Value Management decisioning engine for telecom operators."""

__version__ = "0.1.0"
