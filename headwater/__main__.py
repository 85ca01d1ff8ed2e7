"""`python -m headwater` is the `headwater` CLI."""

from headwater.cli import main

main()
