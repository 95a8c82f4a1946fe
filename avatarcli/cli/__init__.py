"""The ``avatar`` command line: thin typer commands over :mod:`avatarcli.pipelines`."""
