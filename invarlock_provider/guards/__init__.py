"""Guards: structural and weight-spectrum measurements taken in every run and compared in every report.

Perplexity averages over tokens, so an edit that breaks structure or blows up a few weight
matrices can leave it almost unchanged; guards look at the model itself.
"""
