"""Data keys (default, doc and check of each) and the checked settings of a host."""
