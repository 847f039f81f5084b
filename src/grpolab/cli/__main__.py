"""`python -m grpolab.cli`: the same as the `grpolab` command."""

from grpolab.cli import main

raise SystemExit(main())
