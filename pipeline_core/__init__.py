"""The job model shared by the stream router and the worker.

One place for each fact: step and job states with their allowed transitions,
how a job id is derived, the message a step's queue carries, where results go,
and how S3 notifications become object references. The Lambda zip and the
worker image both ship this package.
"""
