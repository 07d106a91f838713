"""Data: loading from the hub or a local mirror, featurisation, the synthetic benchmark."""
