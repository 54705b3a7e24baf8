"""Training toolkit for fkd-track: dataset specs, prepared sets, models, masked loss, fit and evaluation.

Modules that need torch import it themselves; `train.datasets` and `train.prepare` work without it.
"""
