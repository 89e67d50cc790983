"""genstack."""
