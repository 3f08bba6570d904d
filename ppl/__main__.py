"""`python -m ppl` and the `ppl` console script.

SIGINT and SIGTERM are taken over before anything else is imported (ppl/runtime/signals.py):
a Ctrl-C while the command starts (JAX takes a second to import) prints one line and exits
130, never a traceback.
"""


def entry() -> None:
    from .runtime import signals
    signals.install()
    from .cli import main
    main()  # ends the process with the command's exit code


if __name__ == "__main__":
    entry()
