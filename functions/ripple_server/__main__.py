"""`python -m ripple_server --target=handle --source=main.py`: see the package's docstring."""

from ripple_server import main

main()
