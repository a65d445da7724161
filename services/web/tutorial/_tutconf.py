"""Where the package tutorials keep their shared config file (``tutorial.conf``)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
TUTCONF = str(HERE / "tutorial.conf")
