"""`python worker.py [options]`: the same as `engram worker`."""

from engram.cli import main

if __name__ == "__main__":
    import sys

    main(["worker", *sys.argv[1:]])
