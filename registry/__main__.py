"""``python -m registry`` runs the ``mlmodel`` CLI."""

from registry.cli import main

if __name__ == "__main__":
    main()
