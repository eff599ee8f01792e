"""The local runtime: plays Lambda's triggers and ECS's task placement against a local AWS emulator.

It runs the real handlers (``stream_router.app``, ``scaler.app``) with events shaped as Lambda
delivers them, and starts and stops real worker processes to match each ECS service's desired
count. What it cannot emulate (instances booting, GPUs) it does not pretend to: a task starts
as soon as the service asks for it.
"""
