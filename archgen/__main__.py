"""`python -m archgen`: the same command as `archgen`."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="archgen")
