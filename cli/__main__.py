"""``python -m sgnlake.cli``: the same as the ``sgnlake`` command."""

from .app import main

if __name__ == "__main__":
    main()
