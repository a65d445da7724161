"""``python -m sitebus``: the same as the ``sitebus`` command."""

from sitebus.cli import main

if __name__ == "__main__":
    main()
