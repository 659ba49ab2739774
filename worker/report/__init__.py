"""The report artifact: its text (frontmatter and sections), its commit and push to the
feature branch, and a faithful copy of the orchestrator's gate that reads it back."""
