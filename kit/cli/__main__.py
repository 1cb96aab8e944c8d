"""`python -m kit.cli`: the same as the `sme2` console script."""

from kit.cli.main import main

main()
