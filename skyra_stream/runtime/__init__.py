"""Runtime: the composition root. The one place that reads `Settings` and turns it into the
small frozen configs each stage takes, builds the collaborators (engine, fetcher, policies,
provenance reader, verdict store) and wires them into the processes the CLI starts."""
