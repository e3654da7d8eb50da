"""`python -m gitconf`: the same as the `gitconf` script."""

from .cli.main import main

main()
