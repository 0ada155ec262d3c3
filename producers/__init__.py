"""Writers to Kafka topics (verdicts, dead letters, ingest events for tools and tests)."""
