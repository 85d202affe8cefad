"""Glue job script (the job's ScriptLocation): the curate job of tributary_curate.glue."""

from tributary_curate.glue import main

main()
