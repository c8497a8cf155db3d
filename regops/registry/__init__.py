"""Talking to a registry through its HTTP API: the client, manifests and sizes
(`images`), retention policies and the prune engine, skopeo."""
