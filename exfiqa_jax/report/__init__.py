"""Reports of the evaluation job: Markdown, CSV and JSON tables, PNG plots."""
