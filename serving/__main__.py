"""``python -m serving`` == the ``serving`` console script."""

from serving.cli import main

if __name__ == "__main__":
    main()
