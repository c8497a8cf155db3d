"""Data for every host of every inventory (pyinfra loads group_data/<group>.py).

Put `registry_*` keys shared by all hosts here, e.g. `registry_gc_schedule`;
docs/reference/keys.md lists every key and its default.
"""
