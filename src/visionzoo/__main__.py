"""`python -m visionzoo`: the same command line as `visionzoo`."""
from .cli.main import main

raise SystemExit(main())
