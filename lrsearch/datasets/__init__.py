"""Data sets: fetched, imported, and the memory-mapped cache every worker shares."""
