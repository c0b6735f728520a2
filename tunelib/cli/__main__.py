"""``python -m tunelib.cli``: the ``tunelib`` command."""

from tunelib.cli import main

if __name__ == "__main__":
    main()
