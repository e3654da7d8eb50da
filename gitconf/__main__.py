"""`python -m gitconf`: the same as the `gitconf` script."""

from .cli.main import main

if __name__ == "__main__":  # worker processes re-import this module under another name
    main()
