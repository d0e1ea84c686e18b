"""``python -m accel``."""

from accel.cli.main import main_entry

if __name__ == "__main__":
    main_entry()
