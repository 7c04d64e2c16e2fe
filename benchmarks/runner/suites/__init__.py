"""The suites: one module per suite, each with NAME, REQUIREMENTS and run(ctx) (the
contract is in benchmarks/runner/common.py)."""
