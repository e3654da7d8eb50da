"""The typer command line: thin commands that parse options, call a library function, render."""
