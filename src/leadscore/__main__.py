"""`python -m leadscore` is the `leadscore` command."""

from leadscore.cli import main

main()
