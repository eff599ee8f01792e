"""The stream router Lambda: S3 intake to job items, and step-to-step routing (issue 7)."""
