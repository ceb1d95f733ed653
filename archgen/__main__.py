"""`python -m archgen`: the same command as `archgen`."""

from .cli import run

if __name__ == "__main__":
    run(prog_name="archgen")
