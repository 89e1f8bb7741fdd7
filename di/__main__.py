"""``python -m di``: the same as the ``di`` command."""

from ._cli import main

main()
