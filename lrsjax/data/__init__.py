"""Data: synthetic generators (the built-in defaults) and loaders for real data sets."""
