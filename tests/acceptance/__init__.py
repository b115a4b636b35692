"""Acceptance tests: real worker processes from the Procfile, the CLIs, and crashes."""
