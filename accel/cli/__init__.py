"""The ``accel`` command: a thin skin over the library (kept light: imported at start-up)."""
