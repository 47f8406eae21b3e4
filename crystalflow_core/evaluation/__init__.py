"""Evaluation: the structure matcher, the metrics, their summaries per run, the paper tables, plots
and report."""
