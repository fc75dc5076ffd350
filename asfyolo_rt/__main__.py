"""`python -m asfyolo_rt ...` (and `torchrun -m asfyolo_rt train ...`) run the CLI."""

from asfyolo_rt.cli.main import console

console()
