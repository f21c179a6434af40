"""`python -m kdviz ...`: see kdviz/cli.py."""
import sys

from kdviz.cli import main

sys.exit(main())
