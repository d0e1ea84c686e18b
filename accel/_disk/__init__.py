"""Files on disk: the part file, its lock, the sidecar, commits and completion."""
