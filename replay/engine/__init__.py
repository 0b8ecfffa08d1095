"""The replay engine: machine description, zone state, buddy and pcp lists, alloc and free."""
