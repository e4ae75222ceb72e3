"""Continuous integration: the GitHub Actions workflows, generated from impls.yaml."""
