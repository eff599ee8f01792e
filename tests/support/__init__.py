"""Test helpers: a moto server, the AWS resources a step needs, and real worker processes."""
