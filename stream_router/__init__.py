"""The intake and router Lambdas: S3 intake to job items, and step-to-step routing."""
