"""`python -m selfhood` is the same as the `selfhood` command."""

from selfhood.cli import main

main()
