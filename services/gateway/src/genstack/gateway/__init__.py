"""genstack gateway."""
