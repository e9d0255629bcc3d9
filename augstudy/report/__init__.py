"""The study report, rendered to Markdown and HTML."""
