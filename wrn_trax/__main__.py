"""`python -m wrn_trax` is the `wrn-trax` command."""
from wrn_trax import cli

if __name__ == '__main__':
  cli.main()
