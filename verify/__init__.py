"""Verification harness: claims, statistics, reports and figures.

The only package that joins ``bounds`` (closed forms) and ``sims`` (Monte Carlo).
"""
