"""Offline evaluation: held-out outfits, FITB and compatibility files, metrics, baselines."""
